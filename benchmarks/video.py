"""Motion features throughput: pixel trajectories (k = 3, one per 6-frame
chunk) plus the flow tracker, on seeded 320x240 video, per flow backend."""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._common import Table
from scalekit.video import FlowTracker, TorchFlow, pixel_trajectories


def run(quick: bool = False) -> None:
    torch.manual_seed(0)
    frames = torch.nn.functional.avg_pool2d(torch.rand(36 if quick else 72, 3, 240, 320), 5, 1, 2)
    backends = {"TorchFlow": TorchFlow()}
    try:
        from scalekit.video import OpenCVFlow

        backends["OpenCV DIS"] = OpenCVFlow("dis")
        backends["OpenCV Farneback"] = OpenCVFlow("farneback")
    except ImportError:
        print("(OpenCV not installed: pip install opencv-python-headless for the OpenCV backends)")
    table = Table("pixel trajectories + tracker, 320x240 (frames/s: video frames per second of compute)", "-")
    tracker = FlowTracker((120, 80), threshold=100.0)
    for name, flow in backends.items():
        start = time.perf_counter()
        mags = []
        for centre in range(3, frames.shape[0], 6):
            traj = pixel_trajectories(frames, centre, k=3, flow=flow)
            mags.append(traj[:, -1].norm(dim=0))
        tracker.track(torch.stack(mags))
        elapsed = time.perf_counter() - start
        table.row(f"{name}: {frames.shape[0] / elapsed:,.0f} frames/s", torch.device("cpu"),
                  elapsed / frames.shape[0], None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
