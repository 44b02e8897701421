"""Counting an ONNX resnet50: flopmeter.count_onnx against onnx-tool's profile of the same file.

Exports torchvision resnet50 (random weights, seed 0, 1x3x224x224) into a temporary folder
with ``torch.onnx.export`` — PyTorch's default dynamo exporter (weights in an external data
file, BatchNorm folded into the convolutions by its optimizer) and, for a second file, the
TorchScript exporter (``dynamo=False``, weights inside the .onnx) — and times, side by side
in the same run, for each file:

  * ``flopmeter.count_onnx(path)`` (load without external data, shape inference, costs),
  * onnx-tool (``pip install onnx-tool``): ``loadmodel`` → ``graph_reorder_nodes`` →
    ``shape_infer`` → ``profile``, what ``onnx_tool.model_profile`` does minus printing.

One warm-up each, then N repeats interleaved (flopmeter, onnx-tool, flopmeter, …) so load
drift hits both alike; prints the median and the best time, both tools' MACs and parameter
counts, and the ratio of the medians. flopmeter's MACs are dot products only (conv, Gemm);
onnx-tool's also count BatchNorm, ReLU, Add and pooling work as MACs.

    python benchmarks/onnx_speed.py               # N=5
    python benchmarks/onnx_speed.py --repeat 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch

import flopmeter


def export_files(folder: str) -> dict[str, str]:
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    x = torch.randn(1, 3, 224, 224)
    files = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files["dynamo (default)"] = os.path.join(folder, "resnet50.onnx")
        torch.onnx.export(model, (x,), files["dynamo (default)"], dynamo=True)
        files["torchscript"] = os.path.join(folder, "resnet50_ts.onnx")
        torch.onnx.export(model, (x,), files["torchscript"], dynamo=False)
    return files


def flopmeter_count(path: str) -> tuple[int, int]:
    r = flopmeter.count_onnx(path)
    return r.macs, r.params.count


def onnx_tool_count(path: str) -> tuple[int, int]:
    import onnx_tool
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = onnx_tool.loadmodel(path, {"verbose": False})
        g = model.graph
        g.graph_reorder_nodes()
        g.shape_infer(None)
        g.profile()
    return int(g.macs[0]), int(g.params)


def bench(fns: dict, path: str, repeat: int) -> dict[str, tuple[list[float], tuple]]:
    results = {name: ([], None) for name in fns}
    for name, fn in fns.items():           # warm-up (imports, caches)
        results[name] = ([], fn(path))
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(path)
            results[name][0].append(time.perf_counter() - t)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    fns = {"flopmeter": flopmeter_count}
    try:
        import onnx_tool  # noqa: F401
        fns["onnx-tool"] = onnx_tool_count
    except ImportError:
        print("note: onnx-tool is not installed (pip install onnx-tool); timing flopmeter alone")
    print(f"torch {torch.__version__}, flopmeter {flopmeter.__version__}, {os.cpu_count()} CPU(s), N={args.repeat}")
    with tempfile.TemporaryDirectory() as folder:
        files = export_files(folder)
        print(f"\n{'file':<18} {'tool':<10} {'median s':>9} {'best s':>8} {'MACs':>15} {'params':>12}")
        for label, path in files.items():
            results = bench(fns, path, args.repeat)
            for name, (times, (macs, params)) in results.items():
                print(f"{label:<18} {name:<10} {statistics.median(times):>9.3f} {min(times):>8.3f} "
                      f"{macs:>15,} {params:>12,}")
            if "onnx-tool" in results:
                ratio = statistics.median(results["onnx-tool"][0]) / statistics.median(results["flopmeter"][0])
                print(f"{label:<18} onnx-tool median / flopmeter median = {ratio:.1f}")


if __name__ == "__main__":
    main()
