"""Convolutions, 1-, 2- and 3-d: strided, padded, dilated, grouped (depthwise) and transposed."""

from __future__ import annotations

from torch import nn

from ..errors import NoClosedFormError
from .derivation import Work
from .registry import closed_form, describe

_DIMS = {1: (("L", ""),), 2: (("H", "_h"), ("W", "_w")), 3: (("D", "_d"), ("H", "_h"), ("W", "_w"))}


def _setup(m, call, transposed: bool):
    nd = len(m.kernel_size)
    x = call.input
    if x.ndim not in (nd + 1, nd + 2):
        raise NoClosedFormError(f"{type(m).__name__} expects a {nd + 1}-d or {nd + 2}-d input, got {x!r}",
                                hint="give the layer a batched or unbatched input of the documented rank")
    batched = x.ndim == nd + 2
    w = Work(describe(m), call.describe(), N=x.shape[0] if batched else 1, C_in=m.in_channels,
             C_out=m.out_channels, g=m.groups)
    dims = _DIMS[nd]
    spatial = x.shape[-nd:]
    padding = m.padding if not isinstance(m.padding, str) else (0,) * nd
    for i, (big, sub) in enumerate(dims):
        w.set(**{f"{big}_in": spatial[i], f"K{sub}": m.kernel_size[i], f"s{sub}": m.stride[i],
                 f"p{sub}": padding[i], f"d{sub}": m.dilation[i]})
        if transposed:
            w.set(**{f"op{sub}": m.output_padding[i]})
    return w, dims, m.bias is not None


def _product(dims, fmt: str) -> str:
    return "·".join(fmt.format(big=big, sub=sub) for big, sub in dims)


@closed_form(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv(m, call):
    """Each output element is one dot product of length (C_in/g)·∏K over its receptive
    field, plus a bias add: N·C_out·∏Out dot products. Out = ⌊(In + 2p − d·(K − 1) − 1)/s⌋ + 1
    per dimension (``padding='same'``: Out = In). Depthwise: g = C_in."""
    w, dims, bias = _setup(m, call, transposed=False)
    for big, sub in dims:
        if m.padding == "same":
            w.let(f"{big}_out", f"{big}_in", note="padding='same'")
        else:
            w.let(f"{big}_out", f"⌊({big}_in + 2·p{sub} − d{sub}·(K{sub} − 1) − 1)/s{sub}⌋ + 1")
    kernel = _product(dims, "K{sub}")
    out = "N·C_out·" + _product(dims, "{big}_out")
    w.count("params", f"C_out·(C_in/g)·{kernel}" + (" + C_out" if bias else ""))
    w.count("macs", f"{out}·(C_in/g)·{kernel}")
    w.count("dots", out)
    if bias:
        w.count("elementwise", out, note="bias add")
    return w.done()


def reached(n_in: int, n_out: int, stride: int, pad: int, dil: int, k: int) -> int:
    """Output positions o of one transposed-conv dimension with some o = i·s + j·d − p."""
    return sum(1 for o in range(n_out)
               if any((o + pad - j * dil) % stride == 0 and 0 <= (o + pad - j * dil) // stride < n_in
                      for j in range(k)))


@closed_form(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def conv_transpose(m, call):
    """Each input element is multiplied into (C_out/g)·∏K outputs: N·C_in·∏In·(C_out/g)·∏K
    MACs, per *input* position, not per output. Out = (In − 1)·s − 2p + d·(K − 1) + op + 1.
    A dot product is formed at every output position that receives a product (R per
    dimension: all of them unless the stride leaves gaps), and a bias add at every output."""
    w, dims, bias = _setup(m, call, transposed=True)
    size = call.arg(1, "output_size")
    for i, (big, sub) in enumerate(dims):
        if size is not None:
            w.set(**{f"{big}_out": list(size)[-len(dims) + i]})
        else:
            w.let(f"{big}_out", f"({big}_in − 1)·s{sub} − 2·p{sub} + d{sub}·(K{sub} − 1) + op{sub} + 1")
    for big, sub in dims:
        env = w.env
        w.let(f"R{sub}", f"|{{i·s{sub} + j·d{sub} − p{sub} : i < {big}_in, j < K{sub}}} ∩ [0, {big}_out)|",
              value=reached(env[f"{big}_in"], env[f"{big}_out"], env[f"s{sub}"], env[f"p{sub}"], env[f"d{sub}"],
                            env[f"K{sub}"]))
    kernel = _product(dims, "K{sub}")
    out = "N·C_out·" + _product(dims, "{big}_out")
    w.count("params", f"C_in·(C_out/g)·{kernel}" + (" + C_out" if bias else ""))
    w.count("macs", "N·C_in·" + _product(dims, "{big}_in") + f"·(C_out/g)·{kernel}")
    w.count("dots", "N·C_out·" + _product(dims, "R{sub}"))
    if bias:
        w.count("elementwise", out, note="bias add")
    return w.done()
