"""What a plan is asked: the cluster, the parallel degrees and the training step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import OptionsError, expect_type
from ...trace.training import OPTIMIZERS
from .cluster import Cluster, parse_cluster

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
RECOMPUTE = ("none", "full")
ZERO = (0, 1, 2, 3)


@dataclass(frozen=True)
class PlanConfig:
    """How to train, per option:

    - ``cluster``: ``GPUSxDEVICE[:NODES]`` (``8xH100:4``: 4 nodes of 8 H100s); the world size is
      their product;
    - ``tp``: tensor-parallel degree (inside a node); ``dp``: data-parallel degree (default:
      world / tp); ``pp``: pipeline stages (only 1 for now);
    - ``zero``: 0 (replicated data parallelism, DDP), 1 or 2 (optimizer state / gradients sharded
      over dp, modelled), 3 (FSDP2 ``fully_shard``, traced); ``fsdp=True`` is ``zero=3``;
    - ``sp``: sequence parallelism with the TP plan; ``recompute``: ``none`` or ``full``
      (every decoder layer checkpointed);
    - ``batch``: sequences per data-parallel rank per step; ``seq_len``: tokens per sequence;
    - ``dtype``: the parameters' (and optimizer's) dtype; ``compute_dtype``: the dtype the
      forward and backward compute in (FSDP2's ``MixedPrecisionPolicy`` parameter dtype, or
      ``torch.autocast`` without FSDP; None: the parameters' dtype); gradients are reduced in
      ``dtype``;
    - ``optimizer``: one of ``sgd``, ``sgd-momentum``, ``adam``, ``adamw``;
    - ``network_bandwidth`` (bytes/s per GPU across nodes) and ``latency`` (seconds per ring
      step) override the cluster's defaults; ``reserve`` the device's memory reserve (bytes).
    """

    cluster: str = "8xH100"
    tp: int = 1
    dp: int | None = None
    pp: int = 1
    zero: int = 0
    fsdp: bool = False
    sp: bool = False
    recompute: str = "none"
    batch: int = 1
    seq_len: int = 2048
    dtype: str = "float32"
    compute_dtype: str | None = "bfloat16"
    optimizer: str = "adamw"
    network_bandwidth: float | None = None
    latency: float | None = None
    reserve: int | None = None

    def __post_init__(self):
        for name in ("tp", "pp", "zero", "batch", "seq_len"):
            expect_type(getattr(self, name), int, f"plan({name}=…)", "a whole number")
        expect_type(self.dp, (int, type(None)), "plan(dp=…)", "a whole number or None")
        for name in ("fsdp", "sp"):
            expect_type(getattr(self, name), bool, f"plan({name}=…)", "True or False")
        for name in ("tp", "pp", "batch", "seq_len"):
            if getattr(self, name) < 1:
                raise OptionsError(f"{name} must be at least 1, not {getattr(self, name)}", hint=f"e.g. {name}=1")
        if self.dp is not None and self.dp < 1:
            raise OptionsError(f"dp must be at least 1, not {self.dp}", hint="leave dp out: world size / tp")
        if self.zero not in ZERO:
            raise OptionsError(f"unknown ZeRO stage {self.zero}", hint="choose 0, 1, 2 or 3 (3 is FSDP2's fully_shard)")
        if self.fsdp and self.zero not in (0, 3):
            raise OptionsError(f"fsdp is ZeRO stage 3, and zero={self.zero} was also given",
                               hint="give one of them: --fsdp or --zero")
        if self.recompute not in RECOMPUTE:
            raise OptionsError(f"unknown recompute '{self.recompute}'", hint=f"choose one of: {', '.join(RECOMPUTE)}")
        if self.optimizer not in OPTIMIZERS:
            raise OptionsError(f"unknown optimizer '{self.optimizer}'", hint=f"choose one of: {', '.join(OPTIMIZERS)}")
        for name in ("dtype", "compute_dtype"):
            value = getattr(self, name)
            if value is not None and value not in DTYPES:
                raise OptionsError(f"unknown {name} '{value}'", hint=f"choose one of: {', '.join(DTYPES)}")
        if self.sp and self.tp == 1:
            raise OptionsError("sequence parallelism splits the sequence over the TP group, and tp is 1",
                               hint="add --tp 2 (or more), or leave --sp out")
        if self.pp > 1:
            raise OptionsError(f"pipeline parallelism (pp={self.pp}) is not supported yet",
                               hint="plan with --pp 1 (tensor and data parallelism, FSDP2, recompute)")
        self.parsed_cluster()                 # an unknown device or a malformed spec fails here

    @property
    def stage(self) -> int:
        """The ZeRO stage (``fsdp`` is 3)."""
        return 3 if self.fsdp else self.zero

    @property
    def param_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def compute(self) -> torch.dtype:
        return DTYPES[self.compute_dtype] if self.compute_dtype is not None else self.param_dtype

    def parsed_cluster(self) -> Cluster:
        return parse_cluster(self.cluster, network_bandwidth=self.network_bandwidth, latency=self.latency)

    def degrees(self) -> tuple[int, int]:
        """(dp, tp), checked against the world size."""
        world = self.parsed_cluster().world
        if self.dp is None:
            if world % (self.tp * self.pp):
                raise OptionsError(f"the world size {world} ({self.cluster}) does not factor into tp×dp with tp={self.tp}",
                                   hint=f"choose a tp that divides {world}, e.g. "
                                        + ", ".join(str(d) for d in range(1, world + 1) if world % d == 0 and d <= 8))
            dp = world // (self.tp * self.pp)
        else:
            dp = self.dp
            if dp * self.tp * self.pp != world:
                raise OptionsError(f"tp×dp = {self.tp}×{dp} = {self.tp * dp} is not the world size {world} ({self.cluster})",
                                   hint=f"give tp×dp = {world}, or leave --dp out (world / tp)")
        cluster = self.parsed_cluster()
        if self.tp > cluster.gpus_per_node:
            raise OptionsError(f"tp={self.tp} is more than the {cluster.gpus_per_node} GPUs of a node",
                               hint="keep tensor parallelism inside a node (its collectives are on the critical path)")
        if self.stage in (1, 2, 3) and dp == 1:
            raise OptionsError(f"ZeRO stage {self.stage} shards over data parallelism, and dp is 1",
                               hint="use more GPUs than tp, or leave --zero/--fsdp out")
        return dp, self.tp


__all__ = ["DTYPES", "RECOMPUTE", "ZERO", "PlanConfig"]
