"""The cluster a plan runs on and the cost model of its collectives.

``--cluster 8xH100:4`` is 4 nodes of 8 H100s (GPUs per node × nodes; ``8xH100`` is one node).
Ranks are numbered node by node; the mesh puts tensor parallelism innermost, so a tensor-parallel
group of up to a node's GPUs stays inside one node.

Links (each a stated assumption, overridable):

- inside a node: the device table's GPU-to-GPU link, bytes/s per direction (NVLink 4 on an
  H100 SXM: 450 GB/s);
- across nodes: ``network_bandwidth`` bytes/s per GPU per direction; default 50 GB/s, one
  400 Gb/s InfiniBand NDR adapter per GPU (400 / 8);
- a latency per step of the ring algorithm: 5 µs inside a node, 10 µs across nodes.

A group whose ranks lie on more than one node runs at the network bandwidth (its slowest hop).

Cost of one collective of S bytes over a group of n ranks at bandwidth B and latency α (the
bandwidth-optimal ring algorithms; S is the full, unsharded buffer: what an all-reduce reduces,
what an all-gather outputs, what a reduce-scatter takes in)::

    all-reduce       2(n−1)/n · S/B + 2(n−1)·α
    all-gather       (n−1)/n · S/B + (n−1)·α
    reduce-scatter   (n−1)/n · S/B + (n−1)·α
    all-to-all       (n−1)/n · S/B + (n−1)·α
    broadcast        S/B + (n−1)·α          (pipelined: the chain's fill)

A group of one rank costs nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...devices import DeviceSpec, get_device
from ...errors import OptionsError

NETWORK_BANDWIDTH = 50e9        # bytes/s per GPU: one 400 Gb/s InfiniBand NDR adapter per GPU
NETWORK_NOTE = "400 Gb/s InfiniBand NDR per GPU = 50 GB/s per direction"
LATENCY_INTRA = 5e-6            # seconds per ring step inside a node (NVLink)
LATENCY_INTER = 10e-6           # seconds per ring step across nodes
_FORM = re.compile(r"^\s*(\d+)\s*[xX×]\s*([^:]+?)\s*(?::\s*(\d+)\s*)?$")


@dataclass(frozen=True)
class Cluster:
    """``nodes`` nodes of ``gpus_per_node`` GPUs of ``device``."""

    device: DeviceSpec
    gpus_per_node: int
    nodes: int = 1
    network_bandwidth: float = NETWORK_BANDWIDTH
    latency_intra: float = LATENCY_INTRA
    latency_inter: float = LATENCY_INTER

    @property
    def world(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def intra_bandwidth(self) -> float:
        """Bytes/s per direction between two GPUs of one node: the device's GPU-to-GPU link, else
        its host link (PCIe) where it has none."""
        bandwidth = self.device.link_bandwidth or self.device.pcie_bandwidth
        if bandwidth is None:
            raise OptionsError(f"the device table gives no GPU-to-GPU link or PCIe bandwidth for {self.device.name}",
                               hint="name a device with a link in the table (flopmeter devices)")
        return bandwidth

    @property
    def intra_link(self) -> str:
        return self.device.link or "PCIe"

    def spans_nodes(self, ranks) -> bool:
        return len({r // self.gpus_per_node for r in ranks}) > 1

    def link_of(self, ranks) -> tuple[str, float, float]:
        """(link name, bytes/s per direction, latency per step) of a group of ``ranks``."""
        if self.spans_nodes(ranks):
            return "network", self.network_bandwidth, self.latency_inter
        return self.intra_link, self.intra_bandwidth, self.latency_intra

    def describe(self) -> str:
        return f"{self.nodes} × {self.gpus_per_node} {self.device.name}"

    def to_dict(self) -> dict:
        return {"device": self.device.name, "gpus_per_node": self.gpus_per_node, "nodes": self.nodes,
                "world": self.world, "intra_link": self.intra_link, "intra_bandwidth": self.intra_bandwidth,
                "network_bandwidth": self.network_bandwidth, "latency_intra_s": self.latency_intra,
                "latency_inter_s": self.latency_inter}


def parse_cluster(text: str, *, network_bandwidth: float | None = None, latency: float | None = None) -> Cluster:
    """``8xH100`` (one node) or ``8xH100:4`` (four nodes) → a :class:`Cluster`; an unknown device
    or a malformed spec is an OptionsError with a hint."""
    if not isinstance(text, str) or not (m := _FORM.match(text)):
        raise OptionsError(f"cannot read the cluster '{text}'",
                           hint="write GPUSxDEVICE[:NODES], e.g. 8xH100 (one node) or 8xH100:4 (4 nodes of 8)")
    per_node, name, nodes = int(m.group(1)), m.group(2), int(m.group(3) or 1)
    if per_node < 1 or nodes < 1:
        raise OptionsError(f"the cluster '{text}' has no GPUs", hint="e.g. 8xH100:4 — 8 GPUs per node, 4 nodes")
    try:
        device = get_device(name)
    except OptionsError as exc:
        raise OptionsError(f"unknown device '{name}' in the cluster '{text}'", hint=exc.hint) from None
    device.require_compute("a plan's step time")
    for value, what in ((network_bandwidth, "network bandwidth"), (latency, "latency")):
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise OptionsError(f"the {what} must be a positive number, not {value!r}",
                               hint="e.g. network_bandwidth=50e9 (bytes/s), latency=5e-6 (seconds)")
    return Cluster(device, per_node, nodes,
                   network_bandwidth=NETWORK_BANDWIDTH if network_bandwidth is None else float(network_bandwidth),
                   latency_intra=LATENCY_INTRA if latency is None else float(latency),
                   latency_inter=LATENCY_INTER if latency is None else float(latency))


# -- the cost model ----------------------------------------------------------------------------------

def bus_factor(kind: str, n: int) -> float:
    """Bytes each rank sends per byte of the full buffer S (the ring algorithms)."""
    if n <= 1:
        return 0.0
    if kind == "all_reduce":
        return 2 * (n - 1) / n
    if kind == "broadcast":
        return 1.0
    return (n - 1) / n                      # all_gather, reduce_scatter, all_to_all


def latency_steps(kind: str, n: int) -> int:
    if n <= 1:
        return 0
    return 2 * (n - 1) if kind == "all_reduce" else n - 1


def collective_time(kind: str, nbytes: int, n: int, bandwidth: float, latency: float) -> float:
    """Seconds of one collective (see the module docstring)."""
    return bus_factor(kind, n) * nbytes / bandwidth + latency_steps(kind, n) * latency


__all__ = [
    "LATENCY_INTER",
    "LATENCY_INTRA",
    "NETWORK_BANDWIDTH",
    "NETWORK_NOTE",
    "Cluster",
    "bus_factor",
    "collective_time",
    "latency_steps",
    "parse_cluster",
]
