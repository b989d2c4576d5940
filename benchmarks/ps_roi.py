"""Position-sensitive RoI pooling vs torchvision, forward and forward+backward.

* COCO R-FCN head: input ``[2, 81 * 49, 50, 75]`` (an 800x1200 image at stride
  16), 300 RoIs per image, 7x7 bins;
* objectness head (R-FCN-3000, K = 1): input ``[8, 2 * 49, 32, 32]``, 300 RoIs
  per image.

RoIs are seeded boxes of 32-600 px; ``sampling_ratio=2``.
"""

from __future__ import annotations

import argparse

import torch
import torchvision

from benchmarks._common import ROWS, Table, cuda_device, devices, measure, write_json
from scalekit import ops

HAS_CUDA_ROWS = True


def head_inputs(n, c, h, w, rois_per_image, seed=0, stride=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    k = n * rois_per_image
    wh = 32 + torch.rand(k, 2, generator=g) * 568
    xy = torch.rand(k, 2, generator=g) * torch.tensor([w * stride, h * stride]) - wh / 2
    idx = torch.arange(n).repeat_interleave(rois_per_image)[:, None].float()
    return x, torch.cat([idx, xy, xy + wh], 1)


CASES = {
    "COCO head [2, 81*49, 50, 75], 600 RoIs": (2, 81 * 49, 50, 75, 300),
    "objectness [8, 2*49, 32, 32], 2400 RoIs": (8, 2 * 49, 32, 32, 300),
}


def run(quick: bool = False) -> None:
    table = Table("ps_roi_align / ps_roi_pool (7x7, spatial_scale 1/16) vs torchvision.ops", "torchvision")
    for device in devices():
        for name, shape in CASES.items():
            x, rois = (t.to(device) for t in head_inputs(*shape))
            for op, ours_fn, theirs_fn in (
                ("ps_roi_align", lambda x: ops.ps_roi_align(x, rois, 7, 1 / 16, 2),
                 lambda x: torchvision.ops.ps_roi_align(x, rois, 7, 1 / 16, 2)),
                ("ps_roi_pool", lambda x: ops.ps_roi_pool(x, rois, 7, 1 / 16),
                 lambda x: torchvision.ops.ps_roi_pool(x, rois, 7, 1 / 16)),
            ):
                if quick and op == "ps_roi_pool":
                    continue
                xg = x.clone().requires_grad_()
                grad = torch.randn_like(ours_fn(x))

                def fwd_bwd(fn):
                    return lambda: torch.autograd.grad(fn(xg), xg, grad)

                with torch.no_grad():
                    table.row(f"{op} fwd  {name}", device, measure(lambda: ours_fn(x), device),
                              measure(lambda: theirs_fn(x), device))
                table.row(f"{op} f+b  {name}", device, measure(fwd_bwd(ours_fn), device),
                          measure(fwd_bwd(theirs_fn), device))
            offset = torch.zeros(rois.shape[0], 2, 7, 7, device=device)
            with torch.no_grad():
                table.row(f"deform_ps_roi_pool fwd  {name}", device,
                          measure(lambda: ops.deform_ps_roi_pool(x, rois, offset, 7, 1 / 16), device), None)
    cuda_rows(quick)


def cuda_rows(quick: bool = False) -> None:
    """CUDA only: ps_roi_align on the COCO head in float16 vs torchvision, and
    whether each backward gives the same gradient twice (bit for bit)."""
    device = cuda_device()
    if device is None:
        return
    name = next(iter(CASES))
    x32, rois32 = (t.to(device) for t in head_inputs(*CASES[name]))
    table = Table("ps_roi_align (7x7, 1/16, sampling 2) on CUDA, float16, vs torchvision.ops", "torchvision")
    x, rois = x32.half(), rois32.half()
    ours_fn = lambda t: ops.ps_roi_align(t, rois, 7, 1 / 16, 2)  # noqa: E731
    theirs_fn = lambda t: torchvision.ops.ps_roi_align(t, rois, 7, 1 / 16, 2)  # noqa: E731
    try:
        xg = x.clone().requires_grad_()
        grad = torch.randn_like(ours_fn(x))
        with torch.no_grad():
            table.row(f"ps_roi_align fwd fp16 {name}", device, measure(lambda: ours_fn(x), device),
                      measure(lambda: theirs_fn(x), device))
        table.row(f"ps_roi_align f+b fp16 {name}", device,
                  measure(lambda: torch.autograd.grad(ours_fn(xg), xg, grad), device),
                  measure(lambda: torch.autograd.grad(theirs_fn(xg), xg, grad), device))
    except Exception as exc:  # a failed row is reported; the others still run
        table.error(f"ps_roi_align fp16 {name}", device, exc)
    xg = x32.clone().requires_grad_()
    grad = torch.randn(rois32.shape[0], 81, 7, 7, device=device)
    for label, fn in (("scalekit", lambda t: ops.ps_roi_align(t, rois32, 7, 1 / 16, 2)),
                      ("torchvision", lambda t: torchvision.ops.ps_roi_align(t, rois32, 7, 1 / 16, 2))):
        first, second = (torch.autograd.grad(fn(xg), xg, grad)[0] for _ in range(2))
        same = torch.equal(first, second)
        case = f"ps_roi_align backward fp32 {name}, {label}"
        print(f"{case}: {'deterministic' if same else 'NOT deterministic'} (two runs compared bit for bit)")
        ROWS.append({"table": "determinism", "case": case, "device": "cuda", "deterministic": same})
        write_json()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
