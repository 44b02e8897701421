"""The public surface of ``import flopmeter``: ``__all__`` is sorted, complete and pinned."""

import flopmeter

PUBLIC = [
    "__version__", "Convention", "CONVENTIONS", "Cost", "count", "count_onnx", "explain", "Explanation",
    "FlopmeterError", "InputError", "measure", "Measurement", "MeasureOptions", "MissingDependencyError",
    "ModelForwardError", "ModuleNode", "NoClosedFormError", "OpRow", "Options", "OptionsError", "Plan", "plan",
    "PlanConfig", "REGISTRY", "Report",
    "report_from_trace", "serve", "Serving", "StepCounter", "StepFlops", "training_flops", "UnsupportedOpsError",
]


def test_all_is_sorted_and_pinned():
    assert flopmeter.__all__ == sorted(flopmeter.__all__, key=str.casefold)
    assert flopmeter.__all__ == PUBLIC           # a change to the public surface is a change to this list


def test_every_exported_name_resolves_and_nothing_public_is_left_out():
    for name in flopmeter.__all__:
        assert getattr(flopmeter, name) is not None, name
    exported = {n for n in dir(flopmeter) if not n.startswith("_")}
    submodules = {n for n in exported if type(getattr(flopmeter, n)).__name__ == "module"}
    assert exported - submodules - {"annotations"} == set(PUBLIC) - {"__version__"}


def test_the_package_is_typed():
    from importlib.resources import files

    assert files("flopmeter").joinpath("py.typed").is_file()
