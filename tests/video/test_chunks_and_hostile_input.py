"""Per-chunk targets (chunk_labels, chunk_centres), stream_inputs, and what the video blocks do
with hostile input: NaN flow, empty and zero-length videos, numpy scalars, bad settings."""

import numpy as np
import pytest
import torch

from scalekit.datasets.synthetic import make_synthetic_shopping
from scalekit.video import (
    FlowTracker,
    MultiStream,
    TorchFlow,
    TrajectoryConv,
    chunk_centres,
    chunk_frames,
    chunk_labels,
    crop_boxes,
    pixel_trajectories,
    resample_indices,
    stacked_flow,
    stream_inputs,
)


class TestChunkLabels:
    def test_the_centre_frame_decides(self):
        # chunk_len 6: centres 3, 9, 15, 21. A segment holding frame 9 but not 3 labels chunk 1 only.
        assert chunk_centres(4).tolist() == [3, 9, 15, 21]
        assert chunk_labels([[4, 9]], [2], 4, inclusive_end=True).tolist() == [0, 3, 0, 0]
        assert chunk_labels([[4, 9]], [2], 4, inclusive_end=False).tolist() == [0, 0, 0, 0]  # 9 is past the end
        assert chunk_labels([[0, 3]], [0], 4, inclusive_end=True).tolist() == [1, 0, 0, 0]
        assert chunk_labels([[0, 2]], [0], 4, inclusive_end=True).tolist() == [0, 0, 0, 0]  # misses the centre
        assert chunk_labels(np.zeros((0, 2)), [], 3).tolist() == [0, 0, 0]
        assert chunk_labels([[0, 5]], [1], 0).tolist() == []

    def test_agrees_with_the_synthetic_videos_own_labels(self):
        v = make_synthetic_shopping(num_chunks=24, seed=4)
        gt = v["ground_truth"]
        labels = chunk_labels(gt["segments"], gt["labels"], 24, inclusive_end=True)
        assert torch.equal(labels, v["chunk_labels"])

    def test_two_classes_on_one_centre_frame_is_an_error(self):
        with pytest.raises(ValueError, match=r"chunk 1 \(centre frame 9\) lies in segment 0 of class 2 and segment 1 "
                                             r"of class 0: one class per chunk"):
            chunk_labels([[6, 11], [8, 20]], [2, 0], 4, inclusive_end=True)
        assert chunk_labels([[6, 11], [8, 20]], [2, 2], 4, inclusive_end=True).tolist() == [0, 3, 3, 0]  # same class: fine

    @pytest.mark.parametrize("args, kwargs, error, match", [
        (([[5, 2]], [0], 3), {}, ValueError, r"segment 0 has start > end: \[5.0, 2.0\]"),
        (([[0, float("nan")]], [0], 3), {}, ValueError, "segment 0 is not finite"),
        (([[0, 5]], [-1], 3), {}, ValueError, "labels must be >= 0"),
        (([[0, 5]], [0.5], 3), {}, TypeError, "labels must be integers"),
        (([[0, 5]], [0, 1], 3), {}, ValueError, r"labels must have shape \[N\] with N = 1"),
        (([0, 5], [0], 3), {}, ValueError, r"segments must have shape \[N, 2\]"),
        (([[0, 5]], [0], 3.0), {}, TypeError, "num_chunks must be an integer"),
        (([[0, 5]], [0], 3, 0), {}, ValueError, "chunk_len must be >= 1"),
        (([[0, 5]], [0], 3), {"inclusive_end": "yes"}, TypeError, "inclusive_end must be True or False"),
    ])
    def test_bad_arguments_are_named(self, args, kwargs, error, match):
        with pytest.raises(error, match=match):
            chunk_labels(*args, **kwargs)

    def test_numpy_scalars(self):
        assert chunk_labels(np.array([[0, 5]]), np.array([1]), np.int64(2), np.int32(6)).tolist() == [2, 0]


class TestFlowTrackerHostile:
    def test_nan_flow_is_an_error_not_a_confident_track(self):
        """Issue 27: all-NaN flow used to leave the box where it was, as if the person stood still."""
        flows = torch.zeros(3, 2, 20, 20)
        flows[1] = float("nan")
        with pytest.raises(ValueError, match=r"flows\[1\] holds NaN or infinite values .* chunk 1"):
            FlowTracker((8, 8), threshold=1.0).track(flows)
        mags = torch.zeros(2, 20, 20)
        mags[0, 3, 3] = float("inf")
        with pytest.raises(ValueError, match=r"flows\[0\] holds NaN or infinite"):
            FlowTracker((8, 8), threshold=1.0).track(mags)
        with pytest.raises(ValueError, match="magnitude must be finite"):
            FlowTracker((8, 8), threshold=1.0).best(torch.full((20, 20), float("nan")))

    def test_settings_are_checked_at_construction(self):
        for args, error, match in ((((0, 8), 1.0), ValueError, r"box_size\[0\] \(height\) must be >= 1"),
                                   (((8.5, 8), 1.0), TypeError, r"box_size\[0\] \(height\) must be an integer"),
                                   (((8,), 1.0), ValueError, r"box_size must be \(height, width\)"),
                                   (((8, 8), float("nan")), ValueError, "threshold must be a finite number"),
                                   (((8, 8), -1), ValueError, "threshold must be >= 0")):
            with pytest.raises(error, match=match):
                FlowTracker(*args)
        assert repr(FlowTracker((np.int64(8), 9), np.float32(2.0))) == "FlowTracker(box_size=(8, 9), threshold=2.0)"

    def test_track_inputs(self):
        tracker = FlowTracker((8, 8), threshold=1.0)
        assert tracker.track(torch.zeros(0, 2, 20, 20)).shape == (0, 4)  # a video of no chunks: no boxes
        with pytest.raises(ValueError, match="does not fit the 6x20 frame"):
            tracker.track(torch.zeros(0, 6, 20))
        with pytest.raises(ValueError, match=r"flows must be \[T, 2, H, W\] flows or \[T, H, W\] magnitudes"):
            tracker.track(torch.zeros(2, 3, 20, 20))
        with pytest.raises(ValueError, match=r"init \(15, 0\) puts the 8x8 box outside the 20x20 frame"):
            tracker.track(torch.zeros(1, 20, 20), init=(15, 0))
        assert tracker.track(torch.zeros(1, 20, 20), init=(np.int64(2), 3)).tolist() == [[2, 3, 10, 11]]


class TestCropBoxesHostile:
    frames = torch.rand(2, 3, 10, 10)

    @pytest.mark.parametrize("boxes, size, match", [
        ([[0, 0, 4, 4], [0, 0, float("nan"), 4]], None, r"boxes\[1\] is not finite"),
        ([[0, 0, 4, 4], [4, 0, 4, 4]], None, r"boxes\[1\] = .* is empty after rounding"),
        ([[0, 0, 4, 4]], None, r"boxes must be a \[T, 4\] = \[2, 4\] tensor"),
        ([[0, 0, 4, 4], [0, 0, 6, 6]], None, r"boxes of different sizes .* need size=\(h, w\)"),
        ([[0, 0, 4, 4], [0, 0, 4, 4]], (0, 4), r"size\[0\] must be >= 1"),
    ])
    def test_bad_boxes_are_named(self, boxes, size, match):
        with pytest.raises(ValueError, match=match):
            crop_boxes(self.frames, torch.tensor(boxes), size=size)

    def test_no_frames(self):
        assert crop_boxes(torch.zeros(0, 3, 10, 10), torch.zeros(0, 4), size=(4, 5)).shape == (0, 3, 4, 5)


class TestFlowHostile:
    def test_nan_frames_are_an_error_not_nan_flow(self):
        a = torch.rand(3, 16, 16)
        b = a.clone()
        b[0, 2, 2] = float("nan")
        with pytest.raises(ValueError, match="frame_b holds NaN or infinite values"):
            TorchFlow()(a, b)

    @pytest.mark.parametrize("a, b, match", [
        (torch.rand(16, 16), torch.rand(16, 17), r"same size, got \[16, 16\] and \[16, 17\]"),
        (torch.rand(1, 16), torch.rand(1, 16), r"at least 2 x 2 pixels"),
        (torch.rand(4, 16, 16), torch.rand(4, 16, 16), r"\[C, H, W\] or \[H, W, C\] with C 1 or 3"),
        (torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), r"frame_a must be \[C, H, W\] or \[H, W\]"),
    ])
    def test_bad_frames(self, a, b, match):
        with pytest.raises(ValueError, match=match):
            TorchFlow()(a, b)

    def test_settings_are_checked_at_construction(self):
        for kwargs, error, match in (({"levels": 0}, ValueError, "levels must be >= 1"),
                                     ({"iterations": 2.0}, TypeError, "iterations must be an integer"),
                                     ({"window": 8}, ValueError, "window must be odd")):
            with pytest.raises(error, match=match):
                TorchFlow(**kwargs)
        assert repr(TorchFlow(np.int64(2))) == "TorchFlow(levels=2, iterations=5, window=9)"

    def test_trajectories_check_k_center_and_the_estimators_output(self):
        frames = torch.zeros(7, 1, 8, 8)
        still = lambda a, b: torch.zeros(2, 8, 8)  # noqa: E731
        for fn in (pixel_trajectories, stacked_flow):
            with pytest.raises(ValueError, match="k must be >= 1, got 0"):
                fn(frames, 3, k=0, flow=still)
            with pytest.raises(TypeError, match="center must be an integer"):
                fn(frames, 3.0, flow=still)
            with pytest.raises(ValueError, match=r"center must index a frame in \[0, 0\)"):
                fn(frames[:0], 0, flow=still)
            with pytest.raises(ValueError, match=r"flow must return \[2, H, W\] = \[2, 8, 8\] per pair of frames, "
                                                 r"got \[8, 8, 2\]"):
                fn(frames, 3, flow=lambda a, b: torch.zeros(8, 8, 2))
            assert fn(frames, np.int64(3), k=np.int32(1), flow=still).shape == (2, 2, 8, 8)


def test_modules_check_their_settings_at_construction():
    with pytest.raises(ValueError, match="k must be >= 1"):
        TrajectoryConv(k=0)
    with pytest.raises(ValueError, match="out_channels must be >= 1"):
        TrajectoryConv(out_channels=0)
    with pytest.raises(ValueError, match="proj_dim must be >= 1"):
        MultiStream({"a": torch.nn.Identity()}, proj_dim=0)
    with pytest.raises(TypeError, match=r"streams\['a'\] must be an nn.Module"):
        MultiStream({"a": lambda x: x})
    with pytest.raises(ValueError, match=r"feature_dims\['a'\] must be >= 1"):
        MultiStream({"a": torch.nn.Identity()}, feature_dims={"a": 0})
    fuse = MultiStream({"a": torch.nn.Identity(), "b": torch.nn.Identity()}, proj_dim=3, feature_dims={"a": 2, "b": 2})
    with pytest.raises(ValueError, match=r"same number of chunks, got \{'a': 4, 'b': 5\}"):
        fuse({"a": torch.zeros(4, 2), "b": torch.zeros(5, 2)})


def test_chunking_and_rates_check_eagerly_and_stay_bounded():
    with pytest.raises(TypeError, match="chunk_len must be an integer"):
        chunk_frames(torch.zeros(4, 1, 2, 2), chunk_len=2.5)  # at the call, not at the first chunk
    assert [c.end for c in chunk_frames(torch.zeros(4, 1, 2, 2), chunk_len=np.int64(3))] == [3, 4]
    assert list(chunk_frames(torch.zeros(0, 1, 2, 2))) == []
    assert resample_indices(10, 30, 1e300).tolist() == list(range(10))  # no 1e300-long arange
    for args, error, match in (((10, float("nan"), 15), ValueError, "source_fps must be a finite number"),
                               ((10, 30, float("inf")), ValueError, "target_fps must be a finite number"),
                               ((-1, 30, 15), ValueError, "num_frames must be >= 0"),
                               ((10.5, 30, 15), TypeError, "num_frames must be an integer")):
        with pytest.raises(error, match=match):
            resample_indices(*args)
    assert resample_indices(np.int64(10), np.float32(30), 15).tolist() == [0, 2, 4, 6, 8]


def test_stream_inputs_follow_the_mover():
    """Every stream's input per chunk; the box goes where the flow is, crops are cut from that box."""
    frames = torch.rand(13, 3, 16, 16)

    def flow(a, b):  # a stand-in estimator: the bottom-right corner moves
        f = torch.zeros(2, 16, 16)
        f[:, 10:, 10:] = 5.0
        return f

    out = stream_inputs(frames, FlowTracker((6, 6), threshold=10.0), flow=flow, crop_size=(4, 4))
    assert out["boxes"].tolist() == [[10, 10, 16, 16]] * 2  # 13 frames: 2 chunks of 6, the last frame dropped
    assert torch.equal(out["frame_rgb"], frames[[3, 9]])
    torch.testing.assert_close(out["crop_rgb"], crop_boxes(frames[[3, 9]], out["boxes"], size=(4, 4)))
    assert out["frame_traj"].shape == (2, 2, 6, 16, 16) and out["crop_stack"].shape == (2, 2, 6, 4, 4)
    assert (out["crop_traj"] == 5.0).all()  # the crop holds only the moving corner
    empty = stream_inputs(frames[:5], FlowTracker((6, 6), threshold=10.0), flow=flow, crop_size=(4, 4))
    assert empty["boxes"].shape == (0, 4) and empty["crop_traj"].shape == (0, 2, 6, 4, 4)
