"""Speed. Measured: latency and throughput of a forward (``measure``), time per module and per
op type from one profiled run (``profile_layers``), and survey rows over models × input
sizes × batches (``survey``, ``sweep``). Estimated: device specs (``devices``), calibration of the machine at
hand (``calibrate``) and the roofline (``roofline``)."""

from .layers import LayerProfile, LayerTime, profile_layers
from .timing import WARN_SPREAD, MeasureOptions, Measurement, measure

__all__ = ["LayerProfile", "LayerTime", "MeasureOptions", "Measurement", "WARN_SPREAD", "measure", "profile_layers"]
