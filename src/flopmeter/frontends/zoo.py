"""``torchvision:NAME`` and ``timm:NAME``: built on the meta device, at the input size of
the model's default weights (classification crop, segmentation resize, video clip).

Detection models take a list of 3×H×W images and their forward depends on data (the
number of proposals), which fake tensors cannot give: the CLI counts them in real mode
on random weights and says so.
"""

from __future__ import annotations

import torch

from .base import (InputRequest, Resolved, build_on_meta, default_dtype, import_optional, refuse_seq_len,
                   shaped_inputs, tensor, unknown_name)


def _weights_meta(tv, name: str):
    try:
        return tv.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _accepts(fn, param: str) -> bool:
    import inspect
    try:
        return param in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _size(value, default: int) -> int:
    if isinstance(value, (list, tuple)):
        value = value[0]
    return int(value) if value else default


def _default_shape(tv, name: str) -> tuple[str, list[tuple]]:
    """(kind, default input shapes) for a torchvision model."""
    w = _weights_meta(tv, name)
    kw = getattr(getattr(w, "transforms", None), "keywords", {}) or {}
    if name in tv.models.list_models(module=tv.models.video):
        frames = (w.meta.get("min_temporal_size") if w else None) or 16
        size = _size(kw.get("crop_size"), 112)
        return "video", [(1, 3, frames, size, size)]
    if name in tv.models.list_models(module=tv.models.detection):
        return "detection", [(1, 3, 800, 800)]
    if name in tv.models.list_models(module=tv.models.optical_flow):
        return "flow", [(1, 3, 520, 960), (1, 3, 520, 960)]
    if name in tv.models.list_models(module=tv.models.segmentation):
        return "segmentation", [(1, 3, _size(kw.get("resize_size"), 520), _size(kw.get("resize_size"), 520))]
    return "classification", [(1, 3, _size(kw.get("crop_size"), 224), _size(kw.get("crop_size"), 224))]


def torchvision_model(name: str, req: InputRequest) -> Resolved:
    tv = import_optional("torchvision", "zoo")
    known = tv.models.list_models()
    if name not in known:
        raise unknown_name("torchvision", name, known)
    refuse_seq_len(req, f"torchvision:{name}")
    kind, default = _default_shape(tv, name)
    extra = {"weights_backbone": None} if kind in ("detection", "segmentation") else {}
    if kind == "segmentation" and _accepts(tv.models.get_model_builder(name), "aux_loss") \
            and _weights_meta(tv, name) is not None:
        extra["aux_loss"] = True      # as built for its published weights (and their _ops)
    weights = _weights_meta(tv, name)
    if name.startswith("vit_") and weights is not None and "min_size" in weights.meta:
        extra["image_size"] = weights.meta["min_size"][0]    # vit_h_14's weights run at 518 px

    def factory():
        with default_dtype(req.dtype):       # weights built in --dtype, never in float32 first
            model = tv.models.get_model(name, weights=None, **extra).eval()
        return model.to(req.dtype) if req.dtype else model

    dtype = req.dtype or torch.float32
    shapes = shaped_inputs(req, default, dtype)

    def make_inputs(device):
        tensors = [tensor(s, d, device) for s, d in shapes]
        if kind == "detection":      # a list of images, one per batch element
            return ([img for t in tensors for img in t.unbind(0)],), {}
        return tuple(tensors), {}

    notes = ["detection: cost depends on the number of proposals the random weights produce"] \
        if kind == "detection" else []
    return Resolved(f"torchvision:{name}", build_on_meta(factory), make_inputs, factory, notes)


def timm_model(name: str, req: InputRequest) -> Resolved:
    timm = import_optional("timm", "zoo")
    known = timm.list_models()
    if name not in known:
        raise unknown_name("timm", name, known)
    refuse_seq_len(req, f"timm:{name}")

    def factory():
        with default_dtype(req.dtype):
            model = timm.create_model(name, pretrained=False).eval()
        return model.to(req.dtype) if req.dtype else model

    model = build_on_meta(factory)
    size = tuple(getattr(model, "pretrained_cfg", {}).get("input_size", (3, 224, 224)))
    shapes = shaped_inputs(req, [(1, *size)], req.dtype or torch.float32)
    return Resolved(f"timm:{name}", model, lambda device: (tuple(tensor(s, d, device) for s, d in shapes), {}),
                    factory)
