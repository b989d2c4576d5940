"""NMS family vs torchvision (and Soft-NMS vs a vectorised pure-PyTorch loop).

Two seeded box distributions:

* ``uniform``: boxes of 0-100 px at uniform positions in a 1000x1000 image.
  Most boxes survive, so greedy NMS does the most work (torchvision's CPU
  kernel is quadratic in the number of kept boxes here).
* ``clustered``: detector-like, jittered copies of 100 objects per 1,000 boxes
  (an RPN or a detection head before NMS); most boxes are suppressed.
"""

from __future__ import annotations

import argparse

import torch
import torchvision

from benchmarks._common import Table, cuda_device, devices, measure
from scalekit import ops

HAS_CUDA_ROWS = True
# Issue 25's target for Soft-NMS on a GPU: 30,000 boxes over 80 classes, Gaussian.
SOFT_NMS_TARGET_MS = 5.0


def uniform_boxes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 1000
    wh = torch.rand(n, 2, generator=g) * 100
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


def clustered_boxes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    objects = max(n // 10, 1)
    ctr = torch.rand(objects, 2, generator=g) * 1000
    size = 16 + torch.rand(objects, 2, generator=g) * 200
    which = torch.randint(0, objects, (n,), generator=g)
    c = ctr[which] + torch.randn(n, 2, generator=g) * size[which] * 0.1
    s = size[which] * (1 + torch.randn(n, 2, generator=g) * 0.1).clamp(min=0.5)
    return torch.cat([c - s / 2, c + s / 2], 1), torch.rand(n, generator=g)


def torch_soft_nms(boxes, scores, iou_threshold=0.3, sigma=0.5, score_threshold=0.001, method="linear"):
    """The pure-PyTorch Soft-NMS people write today: one vectorised decay per selection."""
    scores = scores.clone()
    alive = scores >= score_threshold
    keep = []
    while bool(alive.any()):
        i = int(torch.where(alive, scores, -1.0).argmax())
        keep.append(i)
        alive[i] = False
        iou = torchvision.ops.box_iou(boxes[i : i + 1], boxes)[0]
        if method == "gaussian":
            weight = torch.exp(-(iou * iou) / sigma)
        else:
            weight = torch.where(iou > iou_threshold, 1 - iou, torch.ones_like(iou))
        scores = torch.where(alive, scores * weight, scores)
        alive &= scores >= score_threshold
    return torch.tensor(keep, dtype=torch.int64)


def run(quick: bool = False) -> None:
    sizes = [1000, 6000] if quick else [1000, 6000, 30000]
    table = Table("nms(iou_threshold=0.5) and batched_nms vs torchvision.ops", "torchvision")
    for device in devices():
        for dist, make in (("uniform", uniform_boxes), ("clustered", clustered_boxes)):
            for n in sizes:
                boxes, scores = (t.to(device) for t in make(n))
                keep = ops.nms(boxes, scores, 0.5)
                assert torch.equal(keep, torchvision.ops.nms(boxes, scores, 0.5)), "results differ"
                ours = measure(lambda: ops.nms(boxes, scores, 0.5), device)
                theirs = measure(lambda: torchvision.ops.nms(boxes, scores, 0.5), device)
                table.row(f"nms {dist} n={n} (kept {len(keep)})", device, ours, theirs)
        for n in sizes[1:]:
            boxes, scores = (t.to(device) for t in clustered_boxes(n))
            idxs = torch.randint(0, 80, (n,), generator=torch.Generator().manual_seed(1)).to(device)
            ours = measure(lambda: ops.batched_nms(boxes, scores, idxs, 0.5), device)
            theirs = measure(lambda: torchvision.ops.batched_nms(boxes, scores, idxs, 0.5), device)
            table.row(f"batched_nms clustered n={n}, 80 classes", device, ours, theirs)

    table = Table("soft_nms vs a vectorised pure-PyTorch Soft-NMS loop", "pure torch")
    for device in devices():
        for method in ("linear", "gaussian"):
            for n in (1000,) if quick else (1000, 6000):
                boxes, scores = (t.to(device) for t in clustered_boxes(n))
                keep, _ = ops.soft_nms(boxes, scores, method=method)
                assert torch.equal(keep, torch_soft_nms(boxes, scores, method=method).to(device)), "results differ"
                ours = measure(lambda: ops.soft_nms(boxes, scores, method=method), device)
                theirs = measure(lambda: torch_soft_nms(boxes, scores, method=method), device, min_time=0)
                table.row(f"soft_nms {method} clustered n={n}", device, ours, theirs)
    cuda_rows(quick)


def cuda_rows(quick: bool = False) -> None:
    """CUDA only: float16 NMS vs torchvision, and Soft-NMS at detector scale
    (no maintained GPU Soft-NMS exists to compare with: absolute times)."""
    device = cuda_device()
    if device is None:
        return
    n = 6000 if quick else 30000
    table = Table("nms / batched_nms on CUDA, float16 boxes and scores, vs torchvision.ops", "torchvision")
    for dist, make in (("uniform", uniform_boxes), ("clustered", clustered_boxes)):
        boxes, scores = (t.to(device).half() for t in make(n))
        idxs = torch.randint(0, 80, (n,), generator=torch.Generator().manual_seed(1)).to(device)
        for case, ours_fn, theirs_fn in (
            (f"nms fp16 {dist} n={n}", lambda: ops.nms(boxes, scores, 0.5),
             lambda: torchvision.ops.nms(boxes, scores, 0.5)),
            (f"batched_nms fp16 {dist} n={n}, 80 classes", lambda: ops.batched_nms(boxes, scores, idxs, 0.5),
             lambda: torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)),
        ):
            try:
                table.row(case, device, measure(ours_fn, device), measure(theirs_fn, device))
            except Exception as exc:  # a failed row is reported; the others still run
                table.error(case, device, exc)

    table = Table(f"soft_nms / batched_soft_nms on CUDA, {n} clustered boxes: absolute time "
                  f"(no GPU peer; target <= {SOFT_NMS_TARGET_MS:g} ms for Gaussian over 80 classes)", "-")
    idxs = torch.randint(0, 80, (n,), generator=torch.Generator().manual_seed(1)).to(device)
    for dtype in (torch.float32, torch.float16):
        boxes, scores = (t.to(device, dtype) for t in clustered_boxes(n))
        tag = "fp32" if dtype == torch.float32 else "fp16"
        for method in ("gaussian", "linear"):
            for case, fn in (
                (f"batched_soft_nms {method} {tag} n={n}, 80 classes",
                 lambda: ops.batched_soft_nms(boxes, scores, idxs, method=method)),
                (f"soft_nms {method} {tag} n={n}, one class", lambda: ops.soft_nms(boxes, scores, method=method)),
            ):
                try:
                    table.row(case, device, measure(fn, device, min_time=0.1, max_repeat=10), None)
                except Exception as exc:
                    table.error(case, device, exc)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes only")
    run(parser.parse_args().quick)
