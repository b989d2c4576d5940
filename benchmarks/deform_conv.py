"""Deformable convolution vs torchvision's and vs a dense conv2d of the same shape.

* res5-like: input ``[8, 512, 32, 32]``, 3x3, 512 out, padding 1;
* res4-like: input ``[4, 256, 64, 64]``, 3x3, 256 out, padding 1.

Offsets are seeded normal (std 1 pixel), v1 (no mask). Forward, and forward +
backward (gradients for input, offset and weight).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
import torchvision

from benchmarks._common import Table, cuda_device, devices, measure
from scalekit import ops

HAS_CUDA_ROWS = True

LAYERS = {"res5 [8, 512, 32, 32]": ((8, 512, 32, 32), 512), "res4 [4, 256, 64, 64]": ((4, 256, 64, 64), 256)}


def run(quick: bool = False) -> None:
    table = Table("deform_conv2d (3x3) vs torchvision.ops.deform_conv2d and vs dense conv2d", "peer")
    for device in devices():
        for name, (shape, c_out) in LAYERS.items():
            if quick and name.startswith("res4"):
                continue
            g = torch.Generator().manual_seed(0)
            x = torch.randn(*shape, generator=g).to(device).requires_grad_()
            w = (torch.randn(c_out, shape[1], 3, 3, generator=g) * 0.01).to(device).requires_grad_()
            offset = torch.randn(shape[0], 18, shape[2], shape[3], generator=g).to(device).requires_grad_()
            grad = torch.randn(shape[0], c_out, shape[2], shape[3], generator=g).to(device)
            ours = lambda: ops.deform_conv2d(x, offset, w, padding=1)  # noqa: E731
            theirs = lambda: torchvision.ops.deform_conv2d(x, offset, w, padding=1)  # noqa: E731
            dense = lambda: F.conv2d(x, w, padding=1)  # noqa: E731

            def fb(fn, inputs=(x, offset, w)):
                return lambda: torch.autograd.grad(fn(), inputs, grad)

            with torch.no_grad():
                t_ours = measure(ours, device)
                table.row(f"{name} fwd  vs torchvision", device, t_ours, measure(theirs, device))
                table.row(f"{name} fwd  vs dense conv2d", device, t_ours, measure(dense, device))
            t_ours = measure(fb(ours), device)
            table.row(f"{name} f+b  vs torchvision", device, t_ours, measure(fb(theirs), device))
            table.row(f"{name} f+b  vs dense conv2d", device, t_ours, measure(fb(dense, (x, w)), device))
    cuda_rows(quick)


def cuda_rows(quick: bool = False) -> None:
    """CUDA only: the same layers in float16 (forward, and forward + backward)."""
    device = cuda_device()
    if device is None:
        return
    table = Table("deform_conv2d (3x3) on CUDA, float16, vs torchvision.ops.deform_conv2d and dense conv2d", "peer")
    for name, (shape, c_out) in LAYERS.items():
        if quick and name.startswith("res4"):
            continue
        g = torch.Generator().manual_seed(0)
        half = dict(device=device, dtype=torch.float16)
        x = torch.randn(*shape, generator=g).to(**half).requires_grad_()
        w = (torch.randn(c_out, shape[1], 3, 3, generator=g) * 0.01).to(**half).requires_grad_()
        offset = torch.randn(shape[0], 18, shape[2], shape[3], generator=g).to(**half).requires_grad_()
        grad = torch.randn(shape[0], c_out, shape[2], shape[3], generator=g).to(**half)
        fns = {"scalekit": (lambda: ops.deform_conv2d(x, offset, w, padding=1), (x, offset, w)),
               "torchvision": (lambda: torchvision.ops.deform_conv2d(x, offset, w, padding=1), (x, offset, w)),
               "dense conv2d": (lambda: F.conv2d(x, w, padding=1), (x, w))}
        times = {}
        for label, (fn, inputs) in fns.items():
            try:
                with torch.no_grad():
                    fwd = measure(fn, device)
                times[label] = (fwd, measure(lambda: torch.autograd.grad(fn(), inputs, grad), device))
            except Exception as exc:  # a failed row is reported; the others still run
                table.error(f"{name} fp16 {label}", device, exc)
        if "scalekit" not in times:
            continue
        for peer in ("torchvision", "dense conv2d"):
            for i, what in enumerate(("fwd", "f+b")):
                theirs = times[peer][i] if peer in times else None
                table.row(f"{name} {what} fp16 vs {peer}", device, times["scalekit"][i], theirs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
