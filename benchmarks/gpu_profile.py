"""Where the time of the CUDA cases that missed issue 25's targets goes: torch.profiler.

``python -m benchmarks.gpu_profile [--out profile.md] [--device cuda] [--iters 5]``

For each case (the benchmark suites' own inputs), scalekit and its peer where
there is one: the time per call, the host syncs per call (``cudaStreamSynchronize``,
``cudaDeviceSynchronize``, and the blocking ``cudaMemcpy`` a ``.item()`` makes) and
kernel launches per call, and the operators with the most device time (self time,
per call). Markdown on stdout and in ``--out``; ``benchmarks/gpu_check.sh`` runs it
as its ``profile`` step and puts the page into SUMMARY.md. Exits 1 when a case
failed (its error is its row of the page).

Cases: ps_roi_align forward + backward on the COCO head; batched_soft_nms
(Gaussian, 30,000 clustered boxes over 80 classes); nms on 30,000 uniform boxes;
deform_conv2d res5 forward + backward in float32 and float16.

``--device cpu`` profiles the same cases on the CPU (smaller sizes), to check the
script where there is no GPU.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Callable

import torch
import torchvision
from torch.profiler import ProfilerActivity, profile

from benchmarks import deform_conv, nms, ps_roi
from scalekit import ops

SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy", "cudaEventSynchronize")
LAUNCH_EVENTS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")


def _device_time(event) -> float:
    """Self device time of a profiler average, in microseconds (the attribute's name moved)."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def cases(device: torch.device) -> dict[str, Callable[[], object]]:
    """Each case's callables, ``{"case / who": fn}``, on the benchmarks' inputs."""
    small = device.type == "cpu"
    out = {}

    n, c, h, w, per_image = ps_roi.CASES["COCO head [2, 81*49, 50, 75], 600 RoIs"]
    if small:
        n, c, per_image = 1, 20 * 49, 50
    x, rois = ps_roi.head_inputs(n, c, h, w, per_image)
    x, rois = x.to(device).requires_grad_(), rois.to(device)
    grad = torch.randn(rois.shape[0], c // 49, 7, 7, device=device)
    for who, fn in (("scalekit", ops.ps_roi_align), ("torchvision", torchvision.ops.ps_roi_align)):
        out[f"ps_roi_align f+b COCO head / {who}"] = (
            lambda fn=fn: torch.autograd.grad(fn(x, rois, 7, 1 / 16, 2), x, grad))

    k = 3000 if small else 30000
    boxes, scores = (t.to(device) for t in nms.clustered_boxes(k))
    idxs = torch.randint(0, 80, (k,), generator=torch.Generator().manual_seed(1)).to(device)
    out[f"batched_soft_nms gaussian {k}/80 / scalekit"] = (
        lambda: ops.batched_soft_nms(boxes, scores, idxs, method="gaussian"))
    ub, us = (t.to(device) for t in nms.uniform_boxes(k))
    out[f"nms uniform {k} / scalekit"] = lambda: ops.nms(ub, us, 0.5)
    out[f"nms uniform {k} / torchvision"] = lambda: torchvision.ops.nms(ub, us, 0.5)

    (shape, c_out) = deform_conv.LAYERS["res5 [8, 512, 32, 32]"]
    if small:
        shape, c_out = (1, 64, 16, 16), 64
    for dtype in (torch.float32,) if small else (torch.float32, torch.float16):
        g = torch.Generator().manual_seed(0)
        kw = dict(device=device, dtype=dtype)
        xi = torch.randn(*shape, generator=g).to(**kw).requires_grad_()
        wt = (torch.randn(c_out, shape[1], 3, 3, generator=g) * 0.01).to(**kw).requires_grad_()
        off = torch.randn(shape[0], 18, shape[2], shape[3], generator=g).to(**kw).requires_grad_()
        gy = torch.randn(shape[0], c_out, shape[2], shape[3], generator=g).to(**kw)
        tag = "fp32" if dtype == torch.float32 else "fp16"
        for who, fn in (("scalekit", ops.deform_conv2d), ("torchvision", torchvision.ops.deform_conv2d)):
            out[f"deform_conv2d res5 f+b {tag} / {who}"] = (
                lambda fn=fn, xi=xi, off=off, wt=wt, gy=gy:
                torch.autograd.grad(fn(xi, off, wt, padding=1), (xi, off, wt), gy))
    return out


def profile_case(fn: Callable[[], object], device: torch.device, iters: int) -> dict:
    """Time per call, host syncs and launches per call, and the top operators by device time."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        fn()
    sync()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    ms = (time.perf_counter() - t) / iters * 1e3
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(iters):
            fn()
        sync()
    events = prof.key_averages()
    syncs = sum(e.count for e in events if e.key in SYNC_EVENTS) / iters
    launches = sum(e.count for e in events if e.key in LAUNCH_EVENTS) / iters
    if device.type == "cuda":
        top = sorted(events, key=_device_time, reverse=True)[:6]
        rows = [(e.key, e.count / iters, _device_time(e) / iters / 1e3) for e in top if _device_time(e) > 0]
    else:
        top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:6]
        rows = [(e.key, e.count / iters, e.self_cpu_time_total / iters / 1e3) for e in top]
    return {"ms": ms, "syncs": syncs, "launches": launches, "top": rows}


def markdown(results: dict[str, dict], device: torch.device) -> str:
    what = "device" if device.type == "cuda" else "CPU"
    lines = [f"## Profile ({device.type}; per call; torch.profiler)", "",
             "| case | ms / call | host syncs | launches |", "| --- | --- | --- | --- |"]
    lines += [f"| {case} | {r['ms']:.3f} | {r['syncs']:g} | {r['launches']:g} |" for case, r in results.items()]
    for case, r in results.items():
        lines += ["", f"{case}: operators by self {what} time", "",
                  f"| operator | calls | self {what} ms |", "| --- | --- | --- |"]
        lines += [f"| `{name[:70]}` | {calls:g} | {ms:.3f} |" for name, calls, ms in r["top"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="also write the Markdown here")
    p.add_argument("--device", default="cuda", help="cuda, or cpu to check the script (default: %(default)s)")
    p.add_argument("--iters", type=int, default=5, help="calls profiled per case (default: %(default)s)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but CUDA is not available (--device cpu checks the script)")
    results = {}
    for case, fn in cases(device).items():
        try:
            results[case] = profile_case(fn, device, args.iters)
        except Exception as exc:  # one failing case is reported; the others still run
            results[case] = {"ms": float("nan"), "syncs": 0, "launches": 0,
                             "top": [(f"error: {type(exc).__name__}: {exc}"[:70], 0, 0.0)]}
        print(f"{case}: {results[case]['ms']:.3f} ms", flush=True)
    page = markdown(results, device)
    print(page)
    if args.out:
        with open(args.out, "w") as f:
            f.write(page)
    failed = [case for case, r in results.items() if math.isnan(r["ms"])]
    if failed:  # the page is written; the exit status says that a case failed
        raise SystemExit(f"error: {len(failed)} case(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
