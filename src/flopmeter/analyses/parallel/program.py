"""The parallel program a plan traces: PyTorch's own parallelism applied to the model.

- ``fake_world(n)``: ``torch.distributed`` on the fake process group (``FakeStore``, backend
  ``fake``) as rank 0 of ``n``; it issues no communication, and every collective still reaches
  the dispatcher as an op with its group and tensors;
- ``build_mesh``: a ``DeviceMesh`` of (``dp``, ``tp``), tensor parallelism innermost (the ranks of a
  TP group are consecutive, so they share a node), made outside any fake mode, sub-meshes too;
- ``parallelize``: tensor parallelism by ``parallelize_module`` (the plan from :mod:`.tp`), then
  activation recomputation (``torch.distributed._composable.checkpoint`` on every decoder layer:
  non-reentrant ``torch.utils.checkpoint``, module names unchanged), then FSDP2 (``fully_shard``
  of every decoder layer and of the root over the ``dp`` mesh dimension, with a
  ``MixedPrecisionPolicy`` when the compute dtype differs from the parameters'), in the order
  torchtitan applies them. The same function parallelizes a real model on a real process group
  (the tests check the plan against such a run).

The model is built on the meta device, parallelized there (outside fake mode), and then given
fake storage with ``to_empty`` under the plan's fake mode.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import InputError
from .tp import check_divisible, tp_plans


@contextlib.contextmanager
def fake_world(world: int):
    """``torch.distributed`` initialised on the fake process group as rank 0 of ``world`` for the
    duration (destroyed afterwards, also on error)."""
    import torch.distributed as dist
    if not dist.is_available():
        raise InputError("this PyTorch has no torch.distributed", hint="install a PyTorch build with distributed support")
    if dist.is_initialized():
        raise InputError("torch.distributed is already initialised in this process; a plan runs its own fake "
                         "process group", hint="plan in a process of its own (the flopmeter command line, or before "
                                               "init_process_group)")
    import torch.testing._internal.distributed.fake_pg  # noqa: F401  (registers the "fake" backend)
    from torch._C._distributed_c10d import FakeStore
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


@dataclass
class Meshes:
    mesh: object            # the 2-D DeviceMesh (dp, tp)
    dp: object              # its sub-meshes
    tp: object


def build_mesh(dp: int, tp: int, device: str = "cpu") -> Meshes:
    from torch.distributed.device_mesh import init_device_mesh
    mesh = init_device_mesh(device, (dp, tp), mesh_dim_names=("dp", "tp"))
    return Meshes(mesh, mesh["dp"], mesh["tp"])


@dataclass(frozen=True)
class Parallelism:
    """How the program is parallelized (what :func:`parallelize` applies)."""

    tp: int = 1
    sp: bool = False
    fsdp: bool = False
    recompute: str = "none"                 # "none" or "full"
    param_dtype: torch.dtype | None = None  # FSDP2's compute dtype of the parameters (None: theirs)
    reduce_dtype: torch.dtype | None = None
    tp_plan: dict | None = None             # a user's plan: {module path: ParallelStyle}


def decoder_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The repeated blocks: ``model.layers`` (Hugging Face decoders), else the children of the
    largest ModuleList."""
    inner = getattr(model, "model", None)
    if isinstance(getattr(inner, "layers", None), nn.ModuleList):
        return [(f"model.layers.{i}", m) for i, m in enumerate(inner.layers)]
    lists = [(p, m) for p, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return []
    path, blocks = max(lists, key=lambda pm: len(pm[1]))
    return [(f"{path}.{i}", m) for i, m in enumerate(blocks)]


def parallelize(model: nn.Module, meshes: Meshes, how: Parallelism) -> nn.Module:
    """Apply tensor parallelism, recomputation and FSDP2 to ``model`` in place (see the module
    docstring); returns it."""
    from torch.distributed.tensor.parallel import parallelize_module
    modules = dict(model.named_modules())
    if how.tp > 1:
        if how.tp_plan is not None:
            import fnmatch
            for key in how.tp_plan:          # parallelize_module skips such an entry with a warning only
                if not any(fnmatch.fnmatchcase(name, key) for name in modules if name):
                    raise InputError(f"the tensor-parallel plan's entry '{key}' matches no module of the model",
                                     hint="give module paths as model.named_modules() names them ('*' for any name)")
            parallelize_module(model, meshes.tp, how.tp_plan)
        else:
            check_divisible(model, how.tp)
            for path, plan in tp_plans(model, how.sp):
                parallelize_module(modules[path], meshes.tp, plan)
    layers = decoder_layers(model)
    if how.recompute == "full":
        from torch.distributed._composable import checkpoint
        for _, layer in layers:
            checkpoint(layer)
    if how.fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        policy = MixedPrecisionPolicy(param_dtype=how.param_dtype, reduce_dtype=how.reduce_dtype)
        for _, layer in layers:
            fully_shard(layer, mesh=meshes.dp, mp_policy=policy)
        fully_shard(model, mesh=meshes.dp, mp_policy=policy)
    return model


__all__ = ["Meshes", "Parallelism", "build_mesh", "decoder_layers", "fake_world", "parallelize"]
