"""An ONNX graph as a flopmeter :class:`~flopmeter.trace.Trace` (no ``nn.Module`` involved).

- **Events**: one per node, in graph order, ``op="onnx.<OpType>"`` (``onnx.<domain>.<OpType>``
  outside the default domain), its inputs as ``args`` (``None`` for an omitted optional
  input) named from the operator's schema, its attributes as ``kwargs``. A node whose
  shapes inference could not determine becomes ``onnx.<OpType>[shape unknown]`` and is
  listed as unsupported, never silently zero.
- **Modules**: from PyTorch's exporters: the ``pkg.torch.onnx.name_scopes`` metadata of
  ``torch.onnx.export(dynamo=True)`` (with the module classes), else node names such as
  ``/layer1/layer1.0/conv1/Conv`` (the TorchScript exporter); other graphs are flat.
- **Parameters**: the initializers, once each however many nodes share them, at their
  real size (fp16, int8, 4-bit). An initializer is a *buffer* when it is a BatchNorm
  running statistic, a non-quantized integer tensor (shapes, indices) or a scalar
  constant; otherwise a parameter, filed under its module (the module named by its
  dotted name, else the module of the first node that reads it).
"""

from __future__ import annotations

import ast
from functools import lru_cache
from math import ceil

import torch

from ..trace.events import OpEvent, Signature, TensorRef
from ..trace.model import ModuleInfo, ParamInfo, StorageInfo, Trace

DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 4: torch.uint16, 5: torch.int16, 6: torch.int32,
          7: torch.int64, 8: torch.uint8, 9: torch.bool, 10: torch.float16, 11: torch.float64, 12: torch.uint32,
          13: torch.uint64, 14: torch.complex64, 15: torch.complex128, 16: torch.bfloat16,
          17: torch.float8_e4m3fn, 18: torch.float8_e4m3fnuz, 19: torch.float8_e5m2, 20: torch.float8_e5m2fnuz,
          21: torch.uint8, 22: torch.int8, 23: torch.uint8, 25: torch.uint8, 26: torch.int8}
BITS = {21: 4, 22: 4, 23: 4, 25: 2, 26: 2}                # packed sub-byte types: bits per element
QUANTIZED_WEIGHT_INPUTS = {"QLinearConv": (3,), "QLinearMatMul": (3,), "MatMulInteger": (1,), "ConvInteger": (1,),
                           "DequantizeLinear": (0,), "MatMulNBits": (1,)}
BN_STATS = {"BatchNormalization": (3, 4)}
# ops whose cost needs no shape (free, or sequence bookkeeping): never "[shape unknown]"
SEQUENCE_OPS = ("SplitToSequence", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceInsert",
                "SequenceErase", "SequenceLength", "ConcatFromSequence")
SHAPELESS = frozenset(("Shape", "Size", "Constant", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Flatten",
                       "Dropout") + SEQUENCE_OPS)


class OnnxParam(ParamInfo):
    """A ParamInfo whose bytes follow the initializer's real element size (4-bit packed)."""

    bits: int = 0

    @property
    def nbytes(self) -> int:
        return ceil(self.numel * self.bits / 8) if self.bits else super().nbytes


def ref(shape, elem_type: int, *, id: int, role: str) -> TensorRef:
    r = TensorRef(tuple(shape), DTYPES.get(elem_type, torch.float32), id=id, storage=id, role=role)
    if elem_type in BITS:
        r.nbytes = ceil(r.numel * BITS[elem_type] / 8)
    return r


def _attrs(node) -> dict:
    from onnx import helper
    out = {}
    for a in node.attribute:
        if a.type in (a.GRAPH, a.GRAPHS, a.TENSOR, a.SPARSE_TENSOR, a.TENSORS):
            out[a.name] = f"<{a.name}>"          # subgraphs and tensors: not needed for costs
            continue
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else ([x.decode() if isinstance(x, bytes) else x for x in v]
                                                               if isinstance(v, list) else v)
    return out


def _signature(node, opsets: dict) -> Signature:
    from onnx import defs
    try:
        schema = defs.get_schema(node.op_type, opsets.get(node.domain or "", 1), node.domain or "")
        return Signature(tuple(i.name for i in schema.inputs))
    except Exception:  # noqa: BLE001  (unknown or custom op)
        return Signature(())


@lru_cache(maxsize=None)
def _literal(text: str):
    return ast.literal_eval(text)


def _scope_path(node) -> tuple[list[tuple[str, str]], bool]:
    """[(module path, class name), …] outermost first, for one node; and whether found."""
    meta = {p.key: p.value for p in node.metadata_props}
    scopes = meta.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            names = _literal(scopes)
            classes = _literal(meta.get("pkg.torch.onnx.class_hierarchy", "[]"))
        except (ValueError, SyntaxError):
            names, classes = [], []
        chain = []
        for i, name in enumerate(names[1:-1], start=1):        # names[0] = root, names[-1] = the op
            cls = classes[i].rsplit(".", 1)[-1] if i < len(classes) else "Module"
            chain.append((name, cls))
        return chain, True
    if node.name.startswith("/"):                               # "/layer1/layer1.0/conv1/Conv"
        chain, path = [], ""
        for part in node.name.split("/")[1:-1]:
            if not part:
                continue
            path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
            chain.append((path, "Module"))
        return chain, True
    return [], False


WEIGHTED = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
BIASED = frozenset({"Conv", "ConvTranspose", "Gemm"})     # input 2 is an optional bias


def _constants(g) -> tuple[set[str], dict[str, float]]:
    """Outputs of Constant nodes that are all zeros (a bias of zeros is no bias: PyTorch's
    exporter gives a bias-free convolution an explicit zero bias), and the values of scalar
    ones (a Pow's exponent)."""
    from .onnx_shapes import small_array
    zeros, scalars = set(), {}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            a = small_array(n.attribute[0].t, limit=None)     # None: external data (never read) or no data
            if a is None:
                continue
            if not a.any():
                zeros.add(n.output[0])
            if a.size == 1 and a.dtype.kind in "fiu":
                scalars[n.output[0]] = a.item()
    return zeros, scalars


def _fused_owner(node, chain, inits):
    """The exporter's optimizer fuses a BatchNorm into the convolution before it and files
    the fused node under the BatchNorm's scope; file it under the module that owns its
    weight instead (``conv1`` for ``conv1.weight``), as the unoptimised graph does."""
    if node.op_type not in WEIGHTED or len(node.input) < 2 or node.input[1] not in inits:
        return chain
    if not any(p.key == "pkg.onnxscript.rewriter.rule_name" for p in node.metadata_props):
        return chain
    owner = node.input[1].rpartition(".")[0]
    parent = owner.rpartition(".")[0]
    if not owner or owner == chain[-1][0]:
        return chain
    kept = [(p, c) for p, c in chain if p == parent or parent.startswith(p + ".")]
    return kept + [(owner, "Module")]


def build_trace(model, values: dict, name: str, inputs: dict[str, tuple[int, ...]]) -> Trace:
    g = model.graph
    opsets = {o.domain or "": o.version for o in model.opset_import}
    ids: dict[str, int] = {}
    storages: dict[int, StorageInfo] = {}
    inits = {i.name: i for i in g.initializer}

    def value_ref(vname: str, role: str = "act"):
        if not vname:
            return None
        shape, et = values.get(vname, (None, 1))
        if shape is None:
            return None
        if vname not in ids:
            ids[vname] = len(ids)
        r = ref(shape, et, id=ids[vname], role=role)
        storages.setdefault(r.id, StorageInfo(r.nbytes))
        return r

    zeros, scalars = _constants(g)
    graph_inputs = [value_ref(n, "input") for n in inputs]
    roles = _initializer_roles(g, inits)
    for iname, role in roles.items():
        value_ref(iname, role)

    # module tree: from the exporter's scopes, or one leaf per named node, or flat
    chains = [_scope_path(n) for n in g.node]
    scoped = any(found for _, found in chains)
    names = [n.name for n in g.node]
    per_node = not scoped and all(names) and len(set(names)) == len(names) and len(names) < 5000
    modules: dict[str, ModuleInfo] = {"": ModuleInfo("", "Graph", calls=1)}

    events: list[OpEvent] = []
    node_modules: list[str] = []
    for index, (node, (chain, _)) in enumerate(zip(g.node, chains)):
        if per_node:
            chain = [(node.name.replace(".", "_"), node.op_type)]
        elif chain:
            chain = _fused_owner(node, chain, inits)
        for path, cls in chain:
            if path not in modules:
                missing, parent = [], path.rpartition(".")[0]
                while parent not in modules:          # scopes the exporter skipped: add them, outermost first
                    missing.append(parent)
                    parent = parent.rpartition(".")[0]
                for skipped in reversed(missing):
                    modules[skipped] = ModuleInfo(skipped, "Module", calls=1)
                modules[path] = ModuleInfo(path, cls, calls=1)
            elif modules[path].type == "Module" and cls != "Module":
                modules[path].type = cls
        module = chain[-1][0] if chain else ""
        node_modules.append(module)
        used = [v if not (pos == 2 and v in zeros and node.op_type in BIASED) else "" for pos, v in enumerate(node.input)]
        ins = tuple(value_ref(v, roles.get(v, "act")) for v in used)
        outs = tuple(value_ref(v) for v in node.output)
        op = f"onnx.{node.op_type}" if node.domain in ("", "ai.onnx") else f"onnx.{node.domain}.{node.op_type}"
        known = all(r is not None for r, v in zip(ins, used) if v) and all(r is not None for r in outs)
        if not known and node.op_type not in SHAPELESS:
            op += "[shape unknown]"
        for r in ins:
            if r is not None and r.role == "act" and r.id in storages:
                storages[r.id].freed = index
        for r in outs:
            if r is not None:
                storages[r.id].created = index
        stack = tuple((p, 0) for p, _ in chain)
        attrs = _attrs(node)
        if node.op_type == "Pow" and len(node.input) > 1 and node.input[1] in scalars:
            attrs["exponent"] = scalars[node.input[1]]
        events.append(OpEvent(op, f"opset{opsets.get(node.domain or '', 0)}", ins, attrs,
                              tuple(r for r in outs if r is not None), module, stack, "forward",
                              _signature(node, opsets)))
        for path, _ in chain:                          # a module's output: its last node's output
            modules[path].outputs = [events[-1].out]

    # a leaf scope without a class (node names only): named after the op types it holds
    parents = {m.rpartition(".")[0] for m in modules if m}
    for path, info in modules.items():
        if path and info.type == "Module" and path not in parents:
            info.type = "/".join(sorted({e.op.removeprefix("onnx.") for e in events if e.module == path})) or "Module"
    for o in g.output:                                 # graph outputs stay alive
        if o.name in ids:
            storages[ids[o.name]].freed = None
    params = _params(inits, roles, ids, modules, g, node_modules)
    return Trace(events=events, modules=list(modules.values()), params=params,
                 inputs=[r for r in graph_inputs if r is not None],
                 options={"mode": "onnx", "device": "onnx", "inference": True},
                 storages=storages, model=name, torch_version=torch.__version__,
                 extra={"onnx": {"opsets": opsets, "producer": f"{model.producer_name} {model.producer_version}".strip()}})


def _initializer_roles(g, inits) -> dict[str, str]:
    # the TorchScript exporter shares identical initializers through Identity nodes: follow them
    source = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity" and n.input and n.output}

    def origin(name: str) -> str:
        while name in source and name not in inits:
            name = source[name]
        return name

    stats, quantized, other = set(), set(), set()
    for node in g.node:
        if node.op_type == "Identity":
            continue
        stat_pos = BN_STATS.get(node.op_type, ())
        for pos, name in enumerate(node.input):
            (stats if pos in stat_pos else other).add(origin(name))
        for pos in QUANTIZED_WEIGHT_INPUTS.get(node.op_type, ()):
            if pos < len(node.input):
                quantized.add(origin(node.input[pos]))
    stats -= other                    # a tensor also read as a weight is a parameter
    roles = {}
    for name, t in inits.items():
        floating = DTYPES.get(t.data_type, torch.float32).is_floating_point
        scalar = len(t.dims) == 0 or (len(t.dims) == 1 and t.dims[0] <= 1)
        if name in stats or (not floating and name not in quantized) or scalar:
            roles[name] = "buffer"
        else:
            roles[name] = "param"
    return roles


def _params(inits, roles, ids, modules, g, node_modules) -> list[ParamInfo]:
    first_user: dict[str, str] = {}
    for node, ev_module in zip(g.node, node_modules):
        for v in node.input:
            first_user.setdefault(v, ev_module)
    out = []
    for name, t in inits.items():
        owner = name.rpartition(".")[0]
        if owner not in modules or not owner:
            module = first_user.get(name, "")
            pname = f"{module}.{name.replace('.', '_')}" if module else name.replace(".", "_")
        else:
            pname = name
        p = OnnxParam(pname, roles[name], tuple(int(d) for d in t.dims), DTYPES.get(t.data_type, torch.float32),
                      roles[name] == "param", tensor=ids.get(name, -1), storage=ids.get(name, -1))
        p.bits = BITS.get(t.data_type, 0)
        out.append(p)
    return out


__all__ = ["build_trace"]
