"""An ONNX file's shapes: load it without its weights, bind the input dimensions, infer the rest.

- ``load``: a path (external data files are never read: only the initializers' dims and
  types are needed) or a ``ModelProto``; local functions are inlined.
- ``bind``: each graph input's shape from the user (``{name: shape}``, a list in input
  order, or one shape), else from the file; a symbolic dimension (``batch_size``) is bound
  by ``batch`` (dim 0), by the user's shape, or by the same name bound on another input.
  Dimensions left unbound are an :class:`InputError` that names them.
- ``infer``: ONNX shape inference (with data propagation) on a copy whose inputs carry the
  bound shapes; returns value name → (shape or None, elem type).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import InputError, MissingDependencyError


def onnx_module():
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "onnx") from None
    return onnx


def load(source):
    """(ModelProto, display name) from a path or a ModelProto; weights are not loaded."""
    onnx = onnx_module()
    if isinstance(source, onnx.ModelProto):
        model, name = source, source.graph.name or "model.onnx"
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"no such file: {source}", hint="check the path of the .onnx file")
        if path.stat().st_size == 0:
            raise InputError(f"{path.name} is empty, not an ONNX model", hint=_EXPORT_HINT)
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001  (any protobuf decoding error)
            raise InputError(f"{path.name} is not a readable ONNX model: {type(exc).__name__}: {str(exc)[:200]}",
                             hint=_EXPORT_HINT) from None
        name = path.name
    if not model.HasField("graph") or not model.opset_import:
        raise InputError(f"{name} is not an ONNX model: it has no {'graph' if not model.HasField('graph') else 'opset'}",
                         hint=_EXPORT_HINT)
    _check_tensors(model, name)
    if model.functions:
        from onnx import inliner
        _check_functions(model, name)
        model = inliner.inline_local_functions(model)
    return model, name


_EXPORT_HINT = "write it again with torch.onnx.export (or check that the file is complete)"
# a tensor dimension or element count at or past 2**63 cannot exist (runtimes index with int64)
MAX_ELEMENTS = 2**63
# local functions are inlined before counting: exported models expand to some 10^5 nodes, so a
# million is room for any real graph and stops a few nested functions expanding exponentially
MAX_INLINED_NODES = 1_000_000
MAX_FUNCTION_DEPTH = 64      # functions calling functions; exporters nest a module's scopes a few levels deep


def _tensors(model):
    """Every TensorProto of the model's graphs, functions and subgraphs: initializers and the
    values of Constant nodes (iterative: a file can nest subgraphs deeply)."""
    onnx = onnx_module()
    graphs = [model.graph]
    nodes = [n for f in model.functions for n in f.node]
    while graphs or nodes:
        if graphs:
            g = graphs.pop()
            yield from g.initializer
            yield from (t.values for t in g.sparse_initializer)
            nodes.extend(g.node)
            continue
        node = nodes.pop()
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t
            elif a.type == onnx.AttributeProto.TENSORS:
                yield from a.tensors
            elif a.type == onnx.AttributeProto.GRAPH:
                graphs.append(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                graphs.extend(a.graphs)


def _check_tensors(model, name: str) -> None:
    """Refuse initializers and constants whose declared dims are negative or larger than a tensor
    can be, before anything reads their data."""
    for t in _tensors(model):
        dims = list(t.dims)
        if any(d < 0 for d in dims) or math.prod(dims) >= MAX_ELEMENTS:
            what = "a negative size" if any(d < 0 for d in dims) else "more elements than a tensor can index (2^63)"
            raise InputError(f"{name}: tensor '{t.name[:80]}' declares dims {dims[:8]}, {what}", hint=_EXPORT_HINT)


def _check_functions(model, name: str) -> None:
    """Refuse local functions that call themselves, nest past MAX_FUNCTION_DEPTH, or expand to
    more than MAX_INLINED_NODES nodes once inlined (sizes computed without inlining anything)."""
    functions = {(f.domain, f.name): f for f in model.functions}
    sizes: dict = {}

    def size(key, depth: int, calling: tuple) -> int:
        if key in sizes:
            return sizes[key]
        if key in calling:
            raise InputError(f"{name}: local function '{key[1][:80]}' calls itself, so it cannot be inlined",
                             hint=_EXPORT_HINT)
        if depth > MAX_FUNCTION_DEPTH:
            raise InputError(f"{name}: local functions nest more than {MAX_FUNCTION_DEPTH} deep", hint=_EXPORT_HINT)
        total = _expanded(functions[key].node, functions, lambda k: size(k, depth + 1, calling + (key,)))
        sizes[key] = total
        return total

    total = _expanded(model.graph.node, functions, lambda k: size(k, 1, ()))
    if total > MAX_INLINED_NODES:
        raise InputError(f"{name}: its local functions expand to {total if total < 10**18 else 'more than 10^18'} "
                         f"nodes, more than the {MAX_INLINED_NODES:,} flopmeter inlines", hint=_EXPORT_HINT)


def _expanded(nodes, functions: dict, size_of) -> int:
    """Nodes once every call to a local function is replaced by its body (subgraphs included)."""
    onnx = onnx_module()
    total, stack = 0, list(nodes)
    while stack:
        node = stack.pop()
        key = (node.domain, node.op_type)
        total += size_of(key) if key in functions else 1
        if total > MAX_INLINED_NODES:
            return total
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                stack.extend(a.g.node)
            elif a.type == onnx.AttributeProto.GRAPHS:
                stack.extend(n for g in a.graphs for n in g.node)
    return total


def graph_inputs(model) -> list:
    """The graph's real inputs (older exporters also list the initializers as inputs)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _dims(value_info) -> list:
    """Each dimension as an int, a symbol name (str) or None (unknown)."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_value"):
            out.append(None)          # some exporters write -1 for a size they leave open: unknown, never a size
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _given(inputs, input_shapes) -> dict:
    names = [i.name for i in inputs]
    if input_shapes is None:
        return {}
    if isinstance(input_shapes, dict):
        for name in input_shapes:
            if name not in names:
                from ..errors import did_you_mean
                raise InputError(f"the ONNX model has no input '{name}'",
                                 hint=did_you_mean(name, names, otherwise=f"its inputs: {', '.join(names)}"))
        return _sizes({k: tuple(v) for k, v in input_shapes.items()})
    shapes = list(input_shapes)
    if shapes and all(isinstance(s, int) for s in shapes):
        shapes = [tuple(shapes)]
    if len(shapes) > len(names):
        raise InputError(f"{len(shapes)} input shapes for a model with {len(names)} input(s): {', '.join(names)}",
                         hint="give one shape per input, or name them: --input NAME=SHAPE")
    return _sizes({n: tuple(s) for n, s in zip(names, shapes)})


def _sizes(shapes: dict) -> dict:
    """The user's input shapes, refused unless every size is a whole number of 1 or more."""
    for name, shape in shapes.items():
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape) or \
                math.prod(shape) >= MAX_ELEMENTS:
            raise InputError(f"input '{name}' has shape {list(shape)[:8]}; sizes are whole numbers of 1 or more "
                             "(fewer than 2^63 elements in all)", hint="give the shape as (1, 3, 224, 224)")
    return shapes


def bind(model, input_shapes=None, batch: int | None = None) -> dict[str, tuple[int, ...]]:
    """Concrete shapes of the graph inputs (see the module docstring)."""
    inputs = graph_inputs(model)
    given = _given(inputs, input_shapes)
    symbols: dict[str, int] = {}
    declared = {i.name: _dims(i) for i in inputs}
    for name, shape in given.items():            # symbols bound by the user's shapes
        dims = declared[name]
        if dims is not None and len(dims) != len(shape):
            raise InputError(f"input '{name}' has {len(dims)} dimensions in the model, {len(shape)} given",
                             hint=f"the model declares {name} as {_show(dims)}")
        for d, v in zip(dims or (), shape):
            if isinstance(d, str):
                symbols.setdefault(d, v)
    out, unbound = {}, []
    for name, dims in declared.items():
        if name in given:
            out[name] = given[name]
            continue
        if dims is None:
            unbound.append(f"{name} (no shape in the file)")
            continue
        shape = []
        for axis, d in enumerate(dims):
            if isinstance(d, int):
                if axis == 0 and batch is not None and d != batch:
                    raise InputError(f"input '{name}' has a fixed batch of {d} in this file, not {batch}",
                                     hint="export the model with a dynamic batch dimension, or leave out --batch")
                shape.append(d)
            elif isinstance(d, str) and d in symbols:
                shape.append(symbols[d])
            elif axis == 0 and batch is not None:
                if isinstance(d, str):
                    symbols[d] = batch
                shape.append(batch)
            else:
                unbound.append(f"{name}[{axis}]" + (f" ('{d}')" if isinstance(d, str) else ""))
                shape.append(None)
        out[name] = tuple(shape)
    if unbound:
        first = inputs[0].name if inputs else "x"
        raise InputError(f"unbound input dimension(s): {', '.join(unbound)}",
                         hint=f"give the shapes: --input {first}=1x3x224x224 (input_shapes={{'{first}': (1, 3, 224, 224)}}),"
                              " or --batch N for a symbolic batch dimension")
    return out


def _show(dims) -> str:
    return "x".join("?" if d is None else str(d) for d in dims) if dims is not None else "?"


# ONNX's data propagation keeps the values of 1-D tensors as shapes, dimension by dimension: a
# vector of millions (Range(0, 2^29) + x, 199 bytes of file) takes gigabytes and minutes. Shape
# vectors have a few entries, so past this length inference runs without propagation.
DATA_PROP_MAX_LENGTH = 65_536


def _run_inference(m):
    onnx = onnx_module()
    try:
        shapes = onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=False)
        vectors = [vi.type.tensor_type.shape.dim for vi in (*shapes.graph.input, *shapes.graph.value_info,
                                                            *shapes.graph.output)]
        longest = max((d[0].dim_value for d in vectors if len(d) == 1 and d[0].HasField("dim_value")), default=0)
        longest = max([longest] + [i.dims[0] for i in m.graph.initializer if len(i.dims) == 1])
        if longest > DATA_PROP_MAX_LENGTH:
            return shapes
        return onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001  (onnx raises several types)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"ONNX shape inference failed with these input shapes: {first}",
                         hint="check the --input shapes against what the model expects") from None


def _values(m) -> dict:
    values = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        sizes = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
        if any(d < 0 for d in sizes) or math.prod(sizes) >= MAX_ELEMENTS:
            raise InputError(f"ONNX shape inference gives '{vi.name[:80]}' the shape {sizes[:8]}, which no tensor has",
                             hint="check the --input shapes against what the model expects")
        dims = _dims(vi)
        known = dims is not None and all(isinstance(d, int) for d in dims)
        values[vi.name] = (tuple(dims) if known else None, vi.type.tensor_type.elem_type)
    for init in m.graph.initializer:
        values[init.name] = (tuple(int(d) for d in init.dims), init.data_type)
    return values


SMALL = 4096          # elements: a tensor this small may be a shape computation worth folding


def _fold(m, values: dict) -> int:
    """Replace nodes that compute small tensors from shapes and constants (Shape → Gather →
    Concat → Expand chains the exporters emit) by Constant nodes, so the next inference
    round knows the shapes they define. Returns how many nodes were replaced."""
    onnx = onnx_module()
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
    import numpy as np

    consts: dict[str, object] = {}
    for init in m.graph.initializer:
        if (value := small_array(init)) is not None:
            consts[init.name] = value
    opset = [o for o in m.opset_import]
    replaced = 0
    for i, node in enumerate(list(m.graph.node)):
        out = None
        if node.op_type == "Constant":
            if node.attribute and node.attribute[0].name == "value":
                if (value := small_array(node.attribute[0].t)) is not None:
                    consts[node.output[0]] = value
            elif node.attribute and node.attribute[0].name in _LISTED_VALUES:
                consts[node.output[0]] = np.array(helper.get_attribute_value(node.attribute[0]))
            continue
        if node.domain not in ("", "ai.onnx") or not node.output:
            continue
        if node.op_type in ("Shape", "Size"):
            shape = values.get(node.input[0], (None, 0))[0]
            if shape is None:
                continue
            if node.op_type == "Size":
                out = np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
            else:
                attrs = {a.name: a.i for a in node.attribute}
                out = np.array(shape[attrs.get("start", 0):attrs.get("end", len(shape))], dtype=np.int64)
        elif node.op_type == "CastLike" and node.input[0] in consts:
            et = values.get(node.input[1], (None, 0))[1]
            if not et:
                continue
            out = consts[node.input[0]].astype(helper.tensor_dtype_to_np_dtype(et))
        elif len(node.output) == 1 and all(not n or n in consts for n in node.input) and node.input:
            known = values.get(node.output[0], (None, 0))[0]
            bound = math.prod(known) if known else _output_bound(node, [consts[n] if n else None for n in node.input])
            if bound is None or bound > SMALL:        # never computed: it could be any size (Range(0, 1e12))
                continue
            out = _numpy_op(node, [consts[n] if n else None for n in node.input])
            if out is None:
                try:
                    sub = helper.make_model(helper.make_graph(
                        [node], "fold", [], [helper.make_tensor_value_info(node.output[0], 0, None)],
                        [numpy_helper.from_array(np.asarray(consts[n]), n) for n in node.input if n]),
                        opset_imports=opset)
                    out = ReferenceEvaluator(sub).run(None, {})[0]
                except Exception:  # noqa: BLE001  (any op the reference runtime cannot run)
                    continue
        if out is None or np.size(out) > SMALL:
            continue
        out = np.asarray(out)
        consts[node.output[0]] = out
        m.graph.node[i].CopyFrom(helper.make_node("Constant", [], [node.output[0]], name=node.name,
                                                  value=numpy_helper.from_array(out)))
        m.graph.node[i].metadata_props.extend(node.metadata_props)
        replaced += 1
    return replaced


_LISTED_VALUES = ("value_float", "value_floats", "value_int", "value_ints")


def small_array(t, limit: int | None = SMALL):
    """A tensor's values as a numpy array when it has at most ``limit`` elements (None: any number,
    as the file holds them) and its data is in the file itself; None otherwise (external data is
    never opened: its location is the file's say, and counting needs shapes only)."""
    onnx = onnx_module()
    if t.data_location == onnx.TensorProto.EXTERNAL or limit is not None and math.prod(t.dims) > limit:
        return None
    from onnx import numpy_helper
    try:
        return numpy_helper.to_array(t)
    except Exception:  # noqa: BLE001  (data that does not match the declared dims or type)
        return None


# ops a shape computation uses whose output is at most as large as their broadcast inputs, or as
# the sum of their inputs' sizes; other ops are folded only where a rule below bounds them
_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Mod", "Pow", "Equal", "Less", "Greater", "LessOrEqual",
                          "GreaterOrEqual", "And", "Or", "Xor", "Not", "Neg", "Abs", "Where", "Min", "Max", "Sum",
                          "Mean", "Floor", "Ceil", "Round", "Sqrt", "Sign", "Clip", "Cast", "CastLike", "Identity",
                          "Relu", "Reciprocal", "BitShift", "IsNaN", "IsInf", "Erf", "Exp", "Log"})
_NOT_LARGER = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Slice", "Concat", "Split",
                         "ReduceProd", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean", "ArgMax", "ArgMin",
                         "Trilu", "ScatterND", "ScatterElements", "CumSum", "GatherElements", "TopK", "Unique",
                         "Compress", "NonZero", "EyeLike", "Shape", "Size"})


def _output_bound(node, xs) -> int | None:
    """An upper bound on the elements of a foldable node's output, from its inputs' values and
    shapes alone (before computing it), or None where nothing bounds it."""
    import numpy as np
    op, sizes = node.op_type, [int(np.size(x)) for x in xs if x is not None]
    try:
        if op in _ELEMENTWISE:
            return math.prod(np.broadcast_shapes(*(np.shape(x) for x in xs if x is not None)))
        if op in _NOT_LARGER:
            return 2 * sum(sizes) if op != "NonZero" else sum(sizes) * max(np.ndim(xs[0]), 1)
        if op == "Gather":
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            data = list(np.shape(xs[0]))
            del data[axis]
            return math.prod(data) * int(np.size(xs[1]))
        if op == "Range":
            start, limit, delta = (float(np.asarray(x).reshape(-1)[0]) for x in xs[:3])
            return max(math.ceil((limit - start) / delta), 0) if delta and math.isfinite(limit - start) else None
        if op == "ConstantOfShape":
            return math.prod(int(v) for v in np.asarray(xs[0]).reshape(-1))
        if op == "Expand":
            return math.prod(np.broadcast_shapes(np.shape(xs[0]), tuple(int(v) for v in xs[1])))
        if op == "Tile":
            return math.prod(int(s) * int(r) for s, r in zip(np.shape(xs[0]), np.asarray(xs[1]).reshape(-1)))
    except (ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError):
        return None
    return None


def _numpy_op(node, xs):
    """The few ops of exporters' shape computations, in numpy (the reference runtime is slow
    to set up per node); None for anything else."""
    import numpy as np
    from onnx import helper
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    op = node.op_type
    try:
        if op == "Expand":
            return np.broadcast_to(xs[0], np.broadcast_shapes(np.shape(xs[0]), tuple(int(v) for v in xs[1]))).copy()
        if op == "Concat":
            return np.concatenate([np.atleast_1d(x) for x in xs if x is not None], axis=attrs.get("axis", 0))
        if op == "Gather":
            return np.take(xs[0], xs[1], axis=attrs.get("axis", 0))
        if op == "Unsqueeze":
            axes = attrs.get("axes", xs[1] if len(xs) > 1 else None)
            out = xs[0]
            for a in sorted(int(v) % (np.ndim(xs[0]) + len(axes)) for v in axes):
                out = np.expand_dims(out, a)
            return out
        if op == "Squeeze":
            axes = attrs.get("axes", xs[1] if len(xs) > 1 and xs[1] is not None else None)
            return np.squeeze(xs[0], axis=None if axes is None else tuple(int(a) for a in axes))
        if op == "Cast":
            return xs[0].astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
        if op == "Identity":
            return xs[0]
        if op in ("Add", "Sub", "Mul") and np.issubdtype(np.asarray(xs[0]).dtype, np.integer):
            return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](xs[0], xs[1])
    except (ValueError, IndexError, TypeError, KeyError):
        return None
    return None


def _shapes_only(model):
    """A copy of ``model`` for shape inference: nodes, inputs and outputs, and the
    initializers' types and dims, with the data of the large ones left out (never copied)."""
    onnx = onnx_module()
    src = model.graph
    m = onnx.ModelProto(ir_version=model.ir_version)
    m.opset_import.extend(model.opset_import)
    g = m.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    for init in src.initializer:
        if math.prod(init.dims) <= SMALL and init.data_location != onnx.TensorProto.EXTERNAL:
            g.initializer.append(init)
        else:
            t = g.initializer.add(name=init.name, data_type=init.data_type, dims=init.dims)
            t.data_location = onnx.TensorProto.EXTERNAL
            t.external_data.add(key="location", value="(not read)")
    return m


def infer(model, shapes: dict[str, tuple[int, ...]]):
    """(inferred ModelProto, {value name: (shape tuple or None, elem type)}): ONNX shape
    inference, then rounds of folding shape computations into constants while some value
    is still unknown."""
    m = _shapes_only(model)
    g = m.graph
    # shapes the file states, used where inference cannot tell (custom-domain ops) — only when
    # the inputs are bound exactly as the file declares them
    as_declared = all(_dims(vi) == list(shapes[vi.name]) for vi in graph_inputs(model) if vi.name in shapes)
    stated = {}
    if as_declared:
        for vi in list(model.graph.value_info) + list(model.graph.output):
            dims = _dims(vi)
            if dims is not None and all(isinstance(d, int) for d in dims):
                stated[vi.name] = (tuple(dims), vi.type.tensor_type.elem_type)
    for vi in g.input:
        if vi.name in shapes:
            shape = vi.type.tensor_type.shape
            shape.ClearField("dim")
            for v in shapes[vi.name]:
                shape.dim.add().dim_value = v
    del g.value_info[:]                               # symbolic shapes from the export, re-derived below
    for vi in g.output:
        vi.type.tensor_type.ClearField("shape")
    m = _run_inference(m)
    values = _values(m)
    for _ in range(4):
        unknown = any(values.get(o, (None, 0))[0] is None for n in m.graph.node for o in n.output if o)
        if not unknown or not _fold(m, values):
            break
        del m.graph.value_info[:]
        m = _run_inference(m)
        values = _values(m)
    for name, stated_value in stated.items():
        if values.get(name, (None, 0))[0] is None:
            values[name] = stated_value
    return m, values


__all__ = ["bind", "graph_inputs", "infer", "load", "onnx_module"]
