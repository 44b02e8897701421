"""Training on many GPUs: trace the parallelized program (tensor parallelism, FSDP2, recompute)
on a fake process group and plan per-rank memory, collectives and step time.

``plan(model, …)`` is the verb (:mod:`.plan`); :class:`PlanConfig` what it is asked;
``search(model, cluster=…)`` plans and ranks every configuration of a cluster (:mod:`.search`)."""

from .cluster import Cluster, collective_time, parse_cluster
from .collectives import Collective
from .config import PlanConfig
from .plan import MemoryPlan, Plan, plan
from .search import Candidate, SearchResult, search

__all__ = ["Candidate", "Cluster", "Collective", "MemoryPlan", "Plan", "PlanConfig", "SearchResult", "collective_time",
           "parse_cluster", "plan", "search"]
