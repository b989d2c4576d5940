"""Sliced detection of a large image: time per slice against running the same
model on one slice, and peak memory.

The model is a small torchvision Faster R-CNN (random weights, a 4-stage conv
backbone at stride 16, 300 proposals: the cost of a real detector's heads
without its backbone's). Ours: :func:`scalekit.slicing.sliced_detect` over a
4,000 x 6,000 image in 512-px slices (150, overlap 0.2, batch 1 and 4,
no full-image pass), time divided by the slices. The peer: the same model run on
each of those slices alone (the same call on each 512 x 512 crop, one slice
through the same detector path), time divided by the slices. A ratio
of at least 1.0x is "no slower per slice" (issue 26). ``--quick``: a 1,024 x
1,536 image (12 slices).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from benchmarks._common import Table
from scalekit.slicing import slice_grid, sliced_detect


def small_detector() -> torch.nn.Module:
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    layers, c = [], 3
    for w in (16, 32, 64, 64):
        layers += [torch.nn.Conv2d(c, w, 3, stride=2, padding=1), torch.nn.ReLU(inplace=True)]
        c = w
    body = torch.nn.Sequential(*layers)
    body.out_channels = 64
    model = FasterRCNN(body, num_classes=4, rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((1.0,),)),
                       box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), rpn_pre_nms_top_n_test=600,
                       rpn_post_nms_top_n_test=300, box_score_thresh=0.001)
    return model.eval()


def run(quick: bool = False) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = small_detector()
    height, width = (1024, 1536) if quick else (4000, 6000)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    one = image[:, :512, :512].contiguous()
    n = len(slice_grid(height, width, 512, 0.2))
    table = Table(f"sliced detection, {height} x {width} image in {n} 512-px slices, one thread (time per slice)",
                  "one slice")
    windows = slice_grid(height, width, 512, 0.2).tolist()
    crops = [image[:, y1:y2, x1:x2].contiguous() for x1, y1, x2, y2 in windows]
    for batch_size in (1, 4):
        kwargs = dict(slice_size=512, overlap=0.2, full_image=False, batch_size=batch_size)
        with torch.inference_mode():
            sliced_detect(model, one, **kwargs)  # warm-up
            t0 = time.perf_counter()  # the peer: every slice on its own, through the same detector path
            for crop in crops:
                sliced_detect(model, crop, **kwargs)
            single = (time.perf_counter() - t0) / n
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            sliced_detect(model, image, **kwargs)
            sliced = (time.perf_counter() - t0) / n
            grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        table.row(f"batch {batch_size}: sliced_detect per slice vs one slice", torch.device("cpu"), sliced, single)
        print(f"  peak resident memory grew by {max(grew, 0) / 1024:.0f} MB during the sliced call "
              f"(the uint8 image, held before: {image.numel() / 2**20:.0f} MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
