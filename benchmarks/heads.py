"""Decoupled head (R-FCN-3000) vs an R-FCN head with class-specific
position-sensitive filters: forward + post-processing time per image.

The shape of thesis Tables 4.3/4.4: C = 200, 1,000, 3,000 classes and K = 1,
5, 25, 100 super-classes; feature map ``[1, 512, 24, 32]`` (a 375x500 image at
stride 16), 300 proposals, 7x7 bins, 512-wide branches. The R-FCN head needs
``(C + 1) * 49`` score maps; at C = 3,000 that is 147,049 maps, which is left
out here (memory).
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._common import Table, measure
from scalekit.heads import DecoupledHead, RFCNHead


SIZES = [(375, 500)]  # the image the [24, 32] map comes from


def inputs(seed=0, proposals=300):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(1, 512, 24, 32, generator=g)
    xy = torch.rand(proposals, 2, generator=g) * torch.tensor([450.0, 330.0])
    wh = 16 + torch.rand(proposals, 2, generator=g) * 200
    return features, [torch.cat([xy, xy + wh], 1)]


def run(quick: bool = False) -> None:
    torch.manual_seed(0)
    features, proposals = inputs()
    cpu = torch.device("cpu")
    table = Table("R-FCN-3000 decoupled head + grouped NMS vs class-specific R-FCN head (forward + postprocess)",
                  "R-FCN head")
    for c in (200, 1000) if quick else (200, 1000, 3000):
        rfcn_time = None
        if c <= 1000:
            rfcn = RFCNHead(512, c, pool_size=7, mid_channels=512).eval()
            with torch.no_grad():
                rfcn_time = measure(lambda: rfcn.postprocess(rfcn(features, proposals), SIZES), cpu)
        for k in (1, 5) if quick else (1, 5, 25, 100):
            head = DecoupledHead(512, c, torch.arange(c) % k, pool_size=7, mid_channels=512, fine_channels=512).eval()
            with torch.no_grad():
                ours = measure(lambda: head.postprocess(head(features, proposals), SIZES), cpu)
            table.row(f"C={c:<5} K={k:<3}", cpu, ours, rfcn_time)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
