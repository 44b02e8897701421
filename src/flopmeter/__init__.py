"""flopmeter: exact parameters, MACs, FLOPs and bytes of PyTorch models, per module and op.

>>> import torch, flopmeter
>>> report = flopmeter.count(torch.nn.Linear(10, 20), input_shape=(1, 10))
>>> report.macs, report.flops
(200, 400)
"""

from .api import Options, count, report_from_trace
from .bench import MeasureOptions, Measurement, measure
from .cost import CONVENTIONS, Convention, Cost
from .errors import (FlopmeterError, InputError, MissingDependencyError, ModelForwardError, NoClosedFormError,
                     OptionsError, UnsupportedOpsError)
from .explain import Explanation, explain
from .formulas import REGISTRY
from .mfu import StepCounter, StepFlops, training_flops
from .frontends.onnx_file import count_onnx
from .report import ModuleNode, OpRow, Report

__version__ = "0.1.0"

__all__ = [
    "CONVENTIONS", "Convention", "Cost", "Explanation", "FlopmeterError", "InputError", "MissingDependencyError",
    "MeasureOptions", "Measurement", "ModelForwardError", "ModuleNode", "NoClosedFormError", "OpRow", "Options",
    "OptionsError", "REGISTRY", "Report", "UnsupportedOpsError", "count", "count_onnx", "explain", "measure",
    "report_from_trace", "StepCounter", "StepFlops", "training_flops", "__version__",
]
