"""Training on many GPUs: trace the parallelized program (tensor parallelism, FSDP2, recompute)
on a fake process group and plan per-rank memory, collectives and step time.

``plan(model, …)`` is the verb (:mod:`.plan`); :class:`PlanConfig` what it is asked."""

from .cluster import Cluster, collective_time, parse_cluster
from .collectives import Collective
from .config import PlanConfig
from .plan import MemoryPlan, Plan, plan

__all__ = ["Cluster", "Collective", "MemoryPlan", "Plan", "PlanConfig", "collective_time", "parse_cluster", "plan"]
