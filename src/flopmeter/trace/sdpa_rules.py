"""Which kernel ``scaled_dot_product_attention`` takes on a CUDA device: PyTorch 2.14's own
selection rules, written out so that a fake run can apply them for a device it does not have.

PyTorch decides in C++ (``aten/src/ATen/native/transformers/cuda/sdp_utils.cpp`` with the
shared checks of ``sdp_utils_cpp.h``); its Python mirrors (``torch.backends.cuda.can_use_*``)
ask the GPU at hand, so they cannot answer for a named device. Each ``can_use_*`` below is the
C++ function's list of checks, in its order, and returns the first one that fails (a reason)
or None. :func:`select` walks the priority order as ``select_sdp_backend`` does.

The device facts come from a :class:`CudaTarget` (compute capability, the cuDNN runtime
version, what the build includes); the process's settings (backends enabled with
``torch.nn.attention.sdpa_kernel``, the priority order, deterministic algorithms, the
``TORCH_CUDNN_SDPA_DEPRIORITIZED`` variable, FA3) from :class:`Flags`, read at the call.
Dense (non-nested) inputs only: a nested input is refused before any run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

BACKENDS = ("flash", "efficient", "cudnn", "math")
_HALF = (torch.float16, torch.bfloat16)
# torch._C._SDPBackend values → our names (-1 error, 0 math, 1 flash, 2 efficient, 3 cudnn, 4 overrideable)
_BY_VALUE = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}
DEFAULT_ORDER = ("flash", "efficient", "math", "cudnn", "overrideable")     # at::Context's default
CUDNN_FIRST = ("cudnn", "flash", "efficient", "math", "overrideable")      # check_prefer_cudnn_attention


@dataclass(frozen=True)
class CudaTarget:
    """The CUDA device a fake run takes its kernels from."""

    name: str                              # "H100 SXM"
    capability: tuple[int, int]            # (9, 0)
    cudnn: int | None = None               # cuDNN runtime version (92400 = 9.24.0); None: no cuDNN attention
    cuda: tuple[int, int] | None = None    # the CUDA version of the build (13, 0)
    flash_built: bool = True               # USE_FLASH_ATTENTION
    mem_efficient_built: bool = True       # USE_MEM_EFF_ATTENTION
    # the build's cuDNN frontend supports head dim 256 (kCuDNNFrontendSupportsD256, a compile-time
    # constant): the 2.14 CUDA wheels' libtorch_cuda.so carries the message of the check it guards
    cudnn_d256: bool = True
    source: str = "named"                  # named | default | local (this machine's GPU)
    notes: tuple[str, ...] = ()            # what was assumed about the build

    @property
    def cc(self) -> str:
        return f"{self.capability[0]}.{self.capability[1]}"

    def to_dict(self) -> dict:
        return {"name": self.name, "capability": self.cc, "cudnn": self.cudnn,
                "cuda": None if self.cuda is None else f"{self.cuda[0]}.{self.cuda[1]}",
                "flash_built": self.flash_built, "mem_efficient_built": self.mem_efficient_built, "source": self.source}


def _truthy(name: str) -> bool:
    """c10::utils::check_env: '1', 'true', 'on', 'yes' (any case) are true."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "on", "yes", "y")


@dataclass(frozen=True)
class Flags:
    """The process's SDPA settings at the call."""

    flash: bool = True
    efficient: bool = True
    math: bool = True
    cudnn: bool = True
    overrideable: bool = True
    order: tuple[str, ...] = DEFAULT_ORDER
    deterministic: bool = False           # deterministic algorithms on and not warn-only
    cudnn_deprioritized: bool = False     # TORCH_CUDNN_SDPA_DEPRIORITIZED
    fa3: bool = False                     # torch.nn.attention.activate_flash_attention_impl('FA3')

    @classmethod
    def current(cls) -> Flags:
        cuda = torch.backends.cuda
        try:
            order = tuple(_BY_VALUE[int(b)] for b in torch._C._get_sdp_priority_order())
        except (AttributeError, KeyError):
            order = DEFAULT_ORDER
        get = getattr(torch._C, "_get_overrideable_sdp_enabled", None)
        try:
            from torch.nn.attention import current_flash_attention_impl
            fa3 = current_flash_attention_impl() == "FA3"
        except ImportError:
            fa3 = False
        return cls(cuda.flash_sdp_enabled(), cuda.mem_efficient_sdp_enabled(), cuda.math_sdp_enabled(),
                   cuda.cudnn_sdp_enabled(), bool(get()) if get else True, order,
                   torch.are_deterministic_algorithms_enabled()
                   and not torch.is_deterministic_algorithms_warn_only_enabled(),
                   _truthy("TORCH_CUDNN_SDPA_DEPRIORITIZED"), fa3)


@dataclass(frozen=True)
class T:
    """What the rules read of one tensor."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    offset: int = 0
    requires_grad: bool = False

    @classmethod
    def of(cls, t: torch.Tensor) -> T:
        return cls(tuple(t.shape), tuple(t.stride()), t.dtype, t.storage_offset(), t.requires_grad)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Call:
    """One SDPA call (after PyTorch gives unbatched 3-d inputs a batch dimension)."""

    q: T
    k: T
    v: T
    mask: T | None = None
    dropout: float = 0.0
    is_causal: bool = False
    enable_gqa: bool = False
    grad: bool = False                    # grad mode enabled

    @property
    def requires_grad(self) -> bool:      # input_requires_grad
        return self.grad and (self.q.requires_grad or self.k.requires_grad or self.v.requires_grad)


def _sm(cap: tuple[int, int], low: tuple[int, int], high: tuple[int, int]) -> bool:
    return low <= cap <= high            # check_sm_version: inclusive on (major, minor)


def _sm_range(t: CudaTarget, low: tuple[int, int], high: tuple[int, int]) -> str | None:
    if _sm(t.capability, low, high):
        return None
    return f"needs sm{low[0]}{low[1]}–sm{high[0]}{high[1]} (this is sm{t.capability[0]}{t.capability[1]})"


def _first(*checks) -> str | None:
    """The first reason among ``checks`` (callables, run in order until one fails)."""
    for check in checks:
        reason = check()
        if reason:
            return reason
    return None


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# -- checks shared by the fused kernels (sdp_utils_cpp.h) --------------------------------------

def _shapes_4d(c: Call) -> str | None:
    if not (c.q.ndim == c.k.ndim == c.v.ndim == 4):
        return f"needs 4-d query, key and value (got {c.q.ndim}-d, {c.k.ndim}-d, {c.v.ndim}-d)"
    return None


def _dtypes(c: Call, allowed: tuple[torch.dtype, ...]) -> str | None:
    if not (c.q.dtype == c.k.dtype == c.v.dtype and c.q.dtype in allowed):
        return f"needs q, k, v in {'/'.join(map(_name, allowed))} (got {_name(c.q.dtype)})"
    return None


def _nonzero_lengths(c: Call) -> str | None:
    if c.q.shape[-2] == 0 or c.k.shape[-2] == 0:
        return "needs non-empty sequences"
    return None


def _last_stride_1(c: Call, ignore_singleton: bool) -> str | None:
    ok = c.q.stride[-1] == 1 and c.k.stride[-1] == 1 and c.v.stride[-1] == 1
    if ignore_singleton:
        ok = ok or c.q.shape[-1] == 1
    if c.mask is not None and c.mask.stride[-1] != 1:
        ok = False                        # GPU backends need the mask's last stride 1 too
    return None if ok else "needs the last dimension of q, k, v (and the mask) contiguous (stride 1)"


def _batch_heads(c: Call, gqa: bool, same_kv_heads: bool, mqa: bool) -> str | None:
    """check_batch_size_and_num_heads_dense<supports_gqa, requires_same_num_heads, supports_mqa>."""
    if not (c.q.shape[0] == c.k.shape[0] == c.v.shape[0]):
        return "needs one batch size for q, k, v"
    hq, hk, hv = c.q.shape[-3], c.k.shape[-3], c.v.shape[-3]
    if c.enable_gqa and gqa:              # check_grouped_query_attention<requires_same_num_heads>
        if same_kv_heads and hk != hv:
            return "needs as many key as value heads"
        if hq % hk != 0 or (not same_kv_heads and hq % hv != 0):
            return "needs the key/value heads to divide the query heads"
        return None
    if not (hq == hk == hv):
        if mqa and hq > 0 and hk == 1 and hv == 1:
            return None
        return f"needs as many heads in q, k and v without enable_gqa (got {hq}, {hk}, {hv})"
    return None


def _mask_shape(c: Call) -> str | None:
    """check_attn_mask_shape (cuDNN): a 2-d (L|1, S|1) or 4-d (B|1, H|1, L|1, S|1) mask, not requiring grad."""
    m = c.mask
    if m is None:
        return None
    if m.requires_grad:
        return "needs a mask that does not require grad"
    b, h, l, s = c.q.shape[0], c.q.shape[1], c.q.shape[2], c.k.shape[2]

    def fits(dim: int, target: int) -> bool:
        return dim == target or dim == 1
    rows_cols = m.ndim >= 2 and fits(m.shape[-2], l) and fits(m.shape[-1], s)
    if rows_cols and (m.ndim == 2 or (m.ndim == 4 and fits(m.shape[0], b) and fits(m.shape[1], h))):
        return None
    return f"needs a 2-d or 4-d mask broadcastable to (B, H, L, S) (got {tuple(m.shape)})"


# -- flash ---------------------------------------------------------------------------------------

def can_use_flash(c: Call, t: CudaTarget, f: Flags) -> str | None:
    if not t.flash_built:
        return "not built into this PyTorch"
    if not f.flash:
        return "disabled (sdpa_kernel / enable_flash_sdp)"
    if t.capability[0] >= 9 and f.fa3:
        dtypes = (torch.float8_e4m3fn, *_HALF)
    else:
        dtypes = _HALF if t.capability[0] >= 8 else (torch.float16,)
    return _first(lambda: _shapes_4d(c), lambda: "takes no attn_mask" if c.mask is not None else None,
                  lambda: _flash_head_dim(c), lambda: _flash_hardware(t), lambda: _flash_sm86_89_120(c, t),
                  lambda: _flash_causal_square(c), lambda: _dtypes(c, dtypes),
                  lambda: _batch_heads(c, gqa=True, same_kv_heads=True, mqa=True), lambda: _nonzero_lengths(c),
                  lambda: _last_stride_1(c, ignore_singleton=True))


def _flash_head_dim(c: Call) -> str | None:
    e, ek, ev = c.q.shape[-1], c.k.shape[-1], c.v.shape[-1]
    if not (e == ek == ev and e <= 256):
        return f"needs one head dim ≤ 256 for q, k, v (got {e}, {ek}, {ev})"
    return None


def _flash_hardware(t: CudaTarget) -> str | None:
    return _sm_range(t, (8, 0), (12, 1))


def _flash_sm86_89_120(c: Call, t: CudaTarget) -> str | None:
    """Training on sm86–sm89 and sm120–sm121 with head dim in (192, 224], or in (224, 256] with dropout."""
    if c.requires_grad and (_sm(t.capability, (8, 6), (8, 9)) or _sm(t.capability, (12, 0), (12, 1))):
        e = c.q.shape[-1]
        if not (e <= 192 or (c.dropout <= 0 and e > 224)):
            return f"cannot train head dim {e} on sm{t.capability[0]}{t.capability[1]}" + \
                (" with dropout" if c.dropout > 0 else "")
    return None


def _flash_causal_square(c: Call) -> str | None:
    if c.is_causal and c.q.shape[-2] != c.k.shape[-2]:
        return f"takes is_causal only when L = S (got {c.q.shape[-2]} × {c.k.shape[-2]})"
    return None


# -- memory-efficient ------------------------------------------------------------------------------

def gemm_alignment(c: Call, t: CudaTarget) -> int:
    """minimum_gemm_alignment: elements the head dims must be a multiple of."""
    half = c.q.dtype in _HALF
    tensor_cores = t.capability[0] >= 8 or (t.capability[0] >= 7 and half)
    align = 4 if t.capability[0] >= 8 else 1
    if tensor_cores:
        align = max(align, 128 // (16 if half else 32))
    return align


def can_use_efficient(c: Call, t: CudaTarget, f: Flags) -> str | None:
    if not t.mem_efficient_built:
        return "not built into this PyTorch"
    if not f.efficient:
        return "disabled (sdpa_kernel / enable_mem_efficient_sdp)"
    dtypes = (torch.float16, torch.float32, torch.bfloat16) if t.capability[0] >= 8 else (torch.float16, torch.float32)
    return _first(lambda: _sm_range(t, (5, 0), (12, 1)), lambda: _shapes_4d(c), lambda: _efficient_head_dim(c, t),
                  lambda: _efficient_offsets(c, t), lambda: _nonzero_lengths(c),
                  lambda: _last_stride_1(c, ignore_singleton=False),
                  lambda: _batch_heads(c, gqa=True, same_kv_heads=True, mqa=True), lambda: _dtypes(c, dtypes))


def _efficient_head_dim(c: Call, t: CudaTarget) -> str | None:
    a = gemm_alignment(c, t)
    e, ek, ev = c.q.shape[-1], c.k.shape[-1], c.v.shape[-1]
    if not (e == ek and e % a == 0 and e > 0 and ev % a == 0 and ev > 0):
        return f"needs q and k head dims equal and q, v head dims multiples of {a} (got {e}, {ek}, {ev})"
    return None


def _efficient_offsets(c: Call, t: CudaTarget) -> str | None:
    """check_data_ptr_alignment_mem_efficient (sm80+): storage offsets aligned to the gemm alignment in bytes."""
    if t.capability[0] < 8:
        return None
    align = gemm_alignment(c, t) * c.q.dtype.itemsize
    for x in (c.q, c.k, c.v):
        if x.numel and (x.offset * x.dtype.itemsize) % align:
            return f"needs q, k, v storage offsets aligned to {align} bytes"
    return None


# -- cuDNN -------------------------------------------------------------------------------------------

def cudnn_decode_disabled(t: CudaTarget) -> bool:
    """cuDNN 9.19–9.25.0 (except 9.24.1) on SM 10.x and 11.x: no cuDNN attention for one query."""
    return t.capability[0] in (10, 11) and t.cudnn is not None and 91900 <= t.cudnn <= 92500 and t.cudnn != 92401


def can_use_cudnn(c: Call, t: CudaTarget, f: Flags) -> str | None:
    if t.cudnn is None:
        return "no cuDNN in this PyTorch"
    if t.cudnn < 90000:
        return f"needs cuDNN 9 (this is {t.cudnn})"
    if c.dropout > 0 and 91100 < t.cudnn < 91400:
        return "cuDNN 9.11–9.13 takes no dropout"
    return _first(lambda: None if f.cudnn else "disabled (sdpa_kernel / enable_cudnn_sdp)",
                  lambda: _shapes_4d(c),
                  lambda: "not deterministic (deterministic algorithms are on)" if f.deterministic else None,
                  lambda: _dtypes(c, _HALF if t.capability[0] >= 8 else (torch.float16,)), lambda: _mask_shape(c),
                  lambda: _sm_range(t, (8, 0), (12, 1)),
                  lambda: None if c.dropout * 16.0 == math.floor(c.dropout * 16.0) else "needs dropout a multiple of 1/16",
                  lambda: _nonzero_lengths(c), lambda: _last_stride_1(c, ignore_singleton=True),
                  lambda: _batch_heads(c, gqa=True, same_kv_heads=False, mqa=True), lambda: _cudnn_shapes(c, t),
                  lambda: _cudnn_backward_head_dim(c, t))


def _sm90_or_10x(t: CudaTarget) -> bool:
    major, minor = t.capability
    return (major == 9 and minor == 0) or major == 10


def _cudnn_d256(t: CudaTarget) -> bool:
    unsupported_sm107 = t.capability == (10, 7) and t.cudnn <= 92500
    return _sm90_or_10x(t) and not unsupported_sm107 and t.cudnn > 92200 and t.cudnn_d256


def _cudnn_shapes(c: Call, t: CudaTarget) -> str | None:
    """check_cudnn_tensor_shapes."""
    b, h, s_q, s_k = c.q.shape[0], c.q.shape[1], c.q.shape[2], c.k.shape[2]
    d_qk, d_v = c.q.shape[3], c.v.shape[3]
    v = t.cudnn
    if b > 65535 or h > 65535:
        return "takes at most 65,535 in batch and heads"
    if v < 8903 or (v < 8906 and c.dropout != 0.0):
        return "needs a newer cuDNN"
    if s_q == 1 and cudnn_decode_disabled(t):
        return f"takes no single-query decode on sm{t.capability[0]}{t.capability[1]} with cuDNN {v}"
    limit = 128
    if _cudnn_d256(t):
        limit = 256
    elif _sm90_or_10x(t) and v >= 91100 and d_qk == 192 and d_v == 128:
        limit = 192
    if d_qk > limit or d_v > limit:
        return f"needs head dims ≤ {limit} here (got {d_qk}, {d_v})"
    if d_qk % 8 or d_v % 8:
        return f"needs head dims that are multiples of 8 (got {d_qk}, {d_v})"
    if v < 8906 and s_k % 64:
        return "needs S a multiple of 64 before cuDNN 8.9.6"
    if v < 90000 and (s_q < 64 or (c.dropout != 0.0 and (s_q % 64 or s_k % 64))):
        return "needs L ≥ 64 before cuDNN 9"
    if s_k == 1:
        return "takes no key/value sequence of length 1"
    if c.dropout != 0.0 and s_q == 1:
        return "takes no dropout with one query"
    return None


def _cudnn_backward_head_dim(c: Call, t: CudaTarget) -> str | None:
    """check_cudnn_d256_bprop_head_dim: training on sm90/sm10x with head dims beyond 128."""
    if not c.requires_grad or not _cudnn_d256(t):
        return None
    d_qk, d_v = c.q.shape[3], c.v.shape[3]
    if (d_qk <= 128 and d_v <= 128) or (d_qk, d_v) in ((192, 128), (256, 256)):
        return None
    return f"has no backward for head dims ({d_qk}, {d_v}) here"


# -- the choice ------------------------------------------------------------------------------------

def prefer_cudnn(t: CudaTarget, f: Flags) -> bool:
    """check_prefer_cudnn_attention: cuDNN first on sm90 / sm10x with a cuDNN newer than 9.15.0
    (builds for CUDA before 13 also need minor 0 or 3), unless TORCH_CUDNN_SDPA_DEPRIORITIZED."""
    if f.cudnn_deprioritized or t.cudnn is None or t.cudnn <= 91500:
        return False
    major, minor = t.capability
    if t.cuda is not None and t.cuda < (13, 0) and minor not in (0, 3):
        return False
    return major in (9, 10)


def priority(t: CudaTarget, f: Flags) -> tuple[str, ...]:
    """The order the dispatcher tries: the process's order, with cuDNN first where PyTorch puts it
    there on its first call on such a device (only when the order is still the default)."""
    if f.order == DEFAULT_ORDER and prefer_cudnn(t, f):
        return CUDNN_FIRST
    return f.order


@dataclass(frozen=True)
class Selection:
    backend: str                          # flash | efficient | cudnn | math
    order: tuple[str, ...]
    refused: dict                         # backend tried before the chosen one → why not

    def to_dict(self) -> dict:
        return {"backend": self.backend, "order": list(self.order), "refused": dict(self.refused)}


_CHECKS = {"flash": can_use_flash, "efficient": can_use_efficient, "cudnn": can_use_cudnn}


def select(c: Call, t: CudaTarget, f: Flags | None = None) -> Selection:
    """select_sdp_backend: the first backend in priority order whose checks pass. Raises
    RuntimeError as PyTorch does when none can run (math disabled and no fused kernel fits)."""
    f = f or Flags.current()
    order = priority(t, f)
    refused: dict[str, str] = {}
    if not (f.flash or f.efficient or f.math or f.cudnn):
        raise RuntimeError("No viable backend for scaled_dot_product_attention was found: every backend is disabled")
    for backend in order:
        if backend == "math":
            if f.math:
                return Selection("math", order, refused)
            refused["math"] = "disabled (sdpa_kernel / enable_math_sdp)"
            continue
        if backend == "overrideable":
            continue
        reason = _CHECKS[backend](c, t, f)
        if reason is None:
            return Selection(backend, order, refused)
        refused[backend] = reason
    raise RuntimeError("No available kernel for scaled_dot_product_attention on "
                       f"{t.name}: " + "; ".join(f"{b}: {r}" for b, r in refused.items()))


__all__ = ["BACKENDS", "Call", "CudaTarget", "Flags", "Selection", "T", "can_use_cudnn", "can_use_efficient",
           "can_use_flash", "prefer_cudnn", "priority", "select"]
