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
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001  (any protobuf decoding error)
            raise InputError(f"{path.name} is not a readable ONNX model: {type(exc).__name__}: {exc}",
                             hint="export the model again, or check that the file is complete") from None
        name = path.name
    if model.functions:
        from onnx import inliner
        model = inliner.inline_local_functions(model)
    return model, name


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
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
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
        return {k: tuple(v) for k, v in input_shapes.items()}
    shapes = list(input_shapes)
    if shapes and all(isinstance(s, int) for s in shapes):
        shapes = [tuple(shapes)]
    if len(shapes) > len(names):
        raise InputError(f"{len(shapes)} input shapes for a model with {len(names)} input(s): {', '.join(names)}",
                         hint="give one shape per input, or name them: --input NAME=SHAPE")
    return {n: tuple(s) for n, s in zip(names, shapes)}


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


def _run_inference(m):
    onnx = onnx_module()
    try:
        return onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001  (onnx raises several types)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"ONNX shape inference failed with these input shapes: {first}",
                         hint="check the --input shapes against what the model expects") from None


def _values(m) -> dict:
    values = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
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
        if init.data_location != onnx.TensorProto.EXTERNAL and np.prod(init.dims, dtype=np.int64) <= SMALL:
            consts[init.name] = numpy_helper.to_array(init)
    opset = [o for o in m.opset_import]
    replaced = 0
    for i, node in enumerate(list(m.graph.node)):
        out = None
        if node.op_type == "Constant":
            if node.attribute and node.attribute[0].name == "value":
                t = node.attribute[0].t
                if np.prod(t.dims, dtype=np.int64) <= SMALL:
                    consts[node.output[0]] = numpy_helper.to_array(t)
            elif node.attribute:
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
            if node.op_type.startswith("Random") or node.output[0] in values and values[node.output[0]][0] and \
                    np.prod(values[node.output[0]][0], dtype=np.int64) > SMALL:
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
    import numpy as np
    src = model.graph
    m = onnx.ModelProto(ir_version=model.ir_version)
    m.opset_import.extend(model.opset_import)
    g = m.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    for init in src.initializer:
        if np.prod(init.dims, dtype=np.int64) <= SMALL:
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
