"""Video blocks: trajectories against exact motion, the tracker, fusion, chunking and the
synthetic video (the bi-directional LSTM's tests are in tests/sequence)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalekit.datasets.synthetic import make_synthetic_video
from scalekit.evaluation import midpoint_map
from scalekit.video import (
    FlowTracker,
    MultiStream,
    TorchFlow,
    TrajectoryConv,
    chunk_frames,
    crop_boxes,
    pixel_trajectories,
    resample_indices,
    stacked_flow,
)

H, W = 24, 32
CENTRE = torch.tensor([W / 2, H / 2])
OMEGA = 0.05  # radians per frame


def _rotation_displacement(d: int) -> torch.Tensor:
    """Exact displacement of every pixel of a pattern rotating by OMEGA per frame, over d frames."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    px, py = xs - CENTRE[0], ys - CENTRE[1]
    a = OMEGA * d
    nx, ny = math.cos(a) * px - math.sin(a) * py, math.sin(a) * px + math.cos(a) * py
    return torch.stack([nx - px, ny - py]).float()


def _frames_knowing_their_index(t: int) -> torch.Tensor:
    frames = torch.zeros(t, 1, H, W)
    frames[:, 0, 0, 0] = torch.arange(t, dtype=torch.float32)
    return frames


def _oracle(a, b):
    """Exact flow between two frames of the rotating pattern (frames carry their index)."""
    return _rotation_displacement(int(b[0, 0, 0]) - int(a[0, 0, 0]))


class TestTrajectories:
    def test_pixel_trajectories_are_the_displacement_of_each_point(self):
        frames = _frames_knowing_their_index(11)
        traj = pixel_trajectories(frames, center=5, k=3, flow=_oracle)
        assert traj.shape == (2, 6, H, W)
        for j, d in enumerate([-3, -2, -1, 1, 2, 3]):
            torch.testing.assert_close(traj[:, j], _rotation_displacement(d))

    def test_stacked_flow_does_not_stay_in_place(self):
        frames = _frames_knowing_their_index(11)
        stacked = stacked_flow(frames, center=5, k=3, flow=_oracle)
        traj = pixel_trajectories(frames, center=5, k=3, flow=_oracle)
        # summing the consecutive flows at a fixed pixel is not the motion of the point that was there
        summed = stacked[:, 3:].sum(1)  # t -> t+1 -> t+2 -> t+3 at the same pixels
        err = (summed - traj[:, 5]).norm(dim=0)
        assert err[0, 0] > 0.05 and err[H // 2, W // 2] < 1e-5  # wrong away from the centre, right at it

    def test_torch_flow_recovers_a_translation(self):
        g = torch.Generator().manual_seed(0)
        base = F.avg_pool2d(torch.rand(1, 1, 96, 128, generator=g), 5, 1, 2)[0]
        frames = torch.stack([torch.roll(base, shifts=(0, d), dims=(1, 2)) for d in range(7)])  # 1 px/frame right
        traj = pixel_trajectories(frames, center=3, k=3, flow=TorchFlow())
        for j, d in enumerate([-3, -2, -1, 1, 2, 3]):
            assert traj[0, j, 24:72, 24:104].median().item() == pytest.approx(d, abs=0.3)
            assert traj[1, j, 24:72, 24:104].median().abs().item() < 0.3

    def test_trajectory_conv_only_looks_at_its_own_pixel(self):
        conv = TrajectoryConv(k=3, out_channels=4)
        x = torch.zeros(1, 2, 6, 9, 9)
        x[0, :, :, 4, 4] = 1.0
        out = conv(x) - conv(torch.zeros_like(x))
        assert out[0, :, 4, 4].abs().sum() > 0
        out[0, :, 4, 4] = 0
        assert out.abs().max() == 0
        with pytest.raises(ValueError, match=r"input must be \[N, 2, 6, H, W\]"):
            conv(torch.zeros(1, 2, 5, 9, 9))


class TestTracker:
    def test_follows_a_moving_blob_and_stays_when_nothing_moves(self):
        video = make_synthetic_video(num_chunks=20, seed=3)
        labels, centres = video["chunk_labels"], video["centres"]
        ys, xs = torch.meshgrid(torch.arange(72.0), torch.arange(96.0), indexing="ij")
        mags = []
        for c in range(len(labels)):  # per chunk: motion where the disc is, if it moves
            x, y = centres[c * 6 + 5]
            blob = (((xs - x) ** 2 + (ys - y) ** 2) <= 64).float()
            mags.append(blob * (1.5 if labels[c] else 0.0))
        boxes = FlowTracker((24, 24), threshold=20.0).track(torch.stack(mags))
        for c in range(len(labels)):
            x, y = centres[c * 6 + 5]
            inside = boxes[c, 0] <= x <= boxes[c, 2] and boxes[c, 1] <= y <= boxes[c, 3]
            if labels[c]:
                assert inside
            elif c > 0:
                assert torch.equal(boxes[c], boxes[c - 1])  # still: the box stays

    def test_integral_image_equals_a_brute_force_search(self):
        g = torch.Generator().manual_seed(0)
        mag = torch.rand(20, 30, generator=g)
        x, y, total = FlowTracker((5, 7), 0).best(mag)
        sums = F.avg_pool2d(mag[None, None], (5, 7), stride=1)[0, 0] * 35
        assert (y, x) == divmod(int(sums.argmax()), sums.shape[1]) and total == pytest.approx(sums.max().item())

    def test_crops(self):
        frames = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).view(2, 3, 10, 10)
        crops = crop_boxes(frames, torch.tensor([[2, 3, 6, 7], [-2, -2, 2, 2]]))
        assert torch.equal(crops[0], frames[0, :, 3:7, 2:6])
        assert torch.equal(crops[1, :, 2:, 2:], frames[1, :, :2, :2]) and crops[1, :, :2].abs().sum() == 0
        assert crop_boxes(frames, torch.tensor([[0, 0, 4, 4]] * 2), size=(8, 8)).shape == (2, 3, 8, 8)


def test_multistream_fusion_and_errors():
    streams = {"a": torch.nn.Flatten(), "b": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))}
    fuse = MultiStream(streams, proj_dim=7)  # lazy projection
    out = fuse({"a": torch.randn(3, 2, 2), "b": torch.randn(3, 12)})
    assert out.shape == (3, 7) and fuse.proj.in_features == 4 + 5
    with pytest.raises(ValueError, match=r"inputs lacks streams \['b'\]"):
        fuse({"a": torch.randn(3, 2, 2)})


def test_chunking_iterators_and_fps():
    frames = [torch.full((1, 2, 2), float(i)) for i in range(13)]
    chunks = list(chunk_frames(iter(frames)))
    assert [(c.start, c.end) for c in chunks] == [(0, 6), (6, 12), (12, 13)]
    assert torch.equal(chunks[1].frames[:, 0, 0, 0], torch.arange(6.0, 12.0))
    assert len(list(chunk_frames(iter(frames), drop_last=True))) == 2
    assert resample_indices(30, 30, 10).tolist() == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert resample_indices(5, 10, 30).tolist() == [0, 1, 2, 3, 4]


def test_synthetic_video_labels_are_consistent_and_seeded():
    v = make_synthetic_video(num_chunks=30, seed=5)
    again = make_synthetic_video(num_chunks=30, seed=5)
    assert torch.equal(v["frames"], again["frames"])
    chunk = v["chunk_labels"]
    for label, (s, e) in zip(v["ground_truth"]["labels"], v["ground_truth"]["segments"]):
        assert (chunk[int(s) // 6 : int(e) // 6 + 1] == label + 1).all()
        assert s % 6 == 0 and (e + 1) % 6 == 0
    assert (chunk > 0).sum() * 6 == sum(e - s + 1 for s, e in v["ground_truth"]["segments"])
    # the ground truth scores itself perfectly under the mid-point criterion
    gt = {"v": v["ground_truth"]}
    det = {"v": {**v["ground_truth"], "scores": np.ones(len(v["ground_truth"]["labels"]))}}
    assert midpoint_map(det, gt)["mAP"] == 1.0


def test_video_decoding_is_an_optional_extra(monkeypatch, tmp_path):
    import sys

    from scalekit.video import read_video_frames

    try:
        import av  # noqa: F401
    except ImportError:
        # the package that is on PyPI, not 'scalekit[video]' (another project's name)
        with pytest.raises(ImportError, match=r"needs PyAV: pip install av \(scalekit's `video` extra\)"):
            read_video_frames(tmp_path / "missing.mp4")  # on the call, not at the first frame
        return
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match="PyAV"):
        next(read_video_frames(tmp_path / "missing.mp4"))


def test_opencv_backend_is_an_optional_extra():
    from scalekit.video import OpenCVFlow

    try:
        import cv2  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install opencv-python-headless \(scalekit's `video` extra\)"):
            OpenCVFlow()
        return
    a = torch.rand(32, 32)
    assert OpenCVFlow("farneback")(a, a).shape == (2, 32, 32)
