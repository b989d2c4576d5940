"""Fuzz: every public function of scalekit.video and scalekit.sequence on hostile input.

Each test accepts a result that meets the function's contract (checked) or a clear
ValueError/TypeError naming the argument (tests/fuzz/hostile.py). Sizes a caller asks
for — chunks, frames, units, channels — are drawn hostile in type and sign but bounded
in magnitude: a request for 2**31 output rows is the allocator's to refuse, not ours.
"""

import math

import numpy as np
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch import nn

from scalekit.sequence import (BiLSTMHead, clips_from_scores, continuation_indicators, memory_limited_scores,
                               stateful_windows)
from scalekit.video import (FlowTracker, MultiStream, OpenCVFlow, TorchFlow, TrajectoryConv, chunk_centres,
                            chunk_frames, chunk_labels, crop_boxes, pixel_trajectories, read_video_frames,
                            resample_indices, stacked_flow, stream_inputs)
from tests.fuzz.hostile import HOSTILE_FLOATS, boxes, covers, expect_clear, hostile_numbers, images, segments, time_bound


def _int_value(v):
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, torch.Tensor) and not v.is_floating_point() and v.dtype != torch.bool:
        return int(v)
    return None


def sizes(bound: int) -> st.SearchStrategy:
    """hostile_numbers() without integers above ``bound`` (what the caller asked to allocate)."""
    return hostile_numbers().filter(lambda v: _int_value(v) is None or _int_value(v) <= bound)


def pairs(bound: int) -> st.SearchStrategy:
    return st.one_of(st.tuples(sizes(bound), sizes(bound)), st.just((4,)), st.just(None), st.just(5))


@st.composite
def videos(draw, max_frames: int = 8, max_side: int = 12) -> torch.Tensor:
    """``[T, C, H, W]`` frames (T may be 0), with NaN pixels or uint8 sometimes; or a wrongly shaped tensor."""
    t, c = draw(st.integers(0, max_frames)), draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(0, max_side)), draw(st.integers(0, max_side))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16)))
    v = torch.rand(t, c, h, w, generator=g)
    kind = draw(st.sampled_from(["float", "nan", "uint8", "wrong"]))
    if kind == "nan" and v.numel():
        v.view(-1)[draw(st.integers(0, v.numel() - 1))] = math.nan
    elif kind == "uint8":
        v = (v * 255).to(torch.uint8)
    elif kind == "wrong":
        v = draw(st.sampled_from([v[:, 0] if t else v.reshape(-1), v[None], torch.tensor(1.0)]))
    return v


def still(a, b):
    """A stand-in flow estimator: nothing moves (fast; the fuzzed function is the caller)."""
    a = torch.as_tensor(a)
    return torch.zeros(2, *a.shape[-2:])


FLOATS = st.one_of(st.floats(-2, 2, width=32), st.sampled_from(HOSTILE_FLOATS))


@st.composite
def one_hostile(draw, **arguments) -> dict:
    """``{name: value}``: every argument from its valid strategy but at most one from its hostile
    one (``name=(valid, hostile)``), so that hostility in one argument is not masked by another's."""
    bad = draw(st.sampled_from([None] * len(arguments) + list(arguments)))  # all valid half of the time
    return {name: draw(hostile if name == bad else valid) for name, (valid, hostile) in arguments.items()}


def small(lo: int, hi: int) -> st.SearchStrategy:
    """A valid size, as a Python or numpy integer."""
    return st.integers(lo, hi).flatmap(lambda v: st.sampled_from([v, np.int64(v)]))


# ----------------------------------------------------------------------------- chunks


@covers(chunk_frames)
@given(frames=st.one_of(videos(), st.just([torch.zeros(1, 2, 2)] * 3), st.just(3)), chunk_len=sizes(64),
       drop_last=st.booleans())
def test_chunk_frames(frames, chunk_len, drop_last):
    with time_bound(2.0):
        chunks = expect_clear(chunk_frames, frames, chunk_len, drop_last=drop_last, names=("frames", "chunk_len"))
        if chunks is None:
            return
        chunks = list(chunks)
    n = len(frames)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.start == i * int(chunk_len) and c.end - c.start <= int(chunk_len) for i, c in enumerate(chunks))
    covered = sum(c.end - c.start for c in chunks)
    assert covered == (n - n % int(chunk_len) if drop_last else n)


@covers(chunk_centres, chunk_labels)
@given(a=one_hostile(num_chunks=(small(0, 30), sizes(200)), chunk_len=(small(1, 8), sizes(64)),
                     segs=(st.lists(st.tuples(st.integers(-5, 200), st.integers(0, 60)), max_size=5).map(
                         lambda r: torch.tensor([[x, x + d] for x, d in r], dtype=torch.float64).reshape(-1, 2)),
                         segments()),
                     labels=(st.lists(st.integers(0, 3), min_size=6, max_size=6),
                             st.lists(st.one_of(st.integers(-2, 4), st.floats(0, 3)), max_size=7)),
                     inclusive_end=(st.booleans(), st.sampled_from([np.bool_(True), 1, None, "yes"]))))
@example(a={"num_chunks": 3, "chunk_len": 6, "segs": torch.tensor([[0.0, 10], [2, 20]]), "labels": [0, 1, 0, 0, 0, 0],
            "inclusive_end": True})  # two classes on one centre frame
def test_chunk_centres_and_labels(a):
    num_chunks, chunk_len, segs, inclusive_end = a["num_chunks"], a["chunk_len"], a["segs"], a["inclusive_end"]
    labels = a["labels"][: len(segs)] if len(a["labels"]) == 6 else a["labels"]
    names = ("num_chunks", "chunk_len", "segments", "segment", "labels", "inclusive_end", "chunk")
    with time_bound(2.0):
        centres = expect_clear(chunk_centres, num_chunks, chunk_len, names=names)
        out = expect_clear(chunk_labels, segs, labels, num_chunks, chunk_len, inclusive_end=inclusive_end, names=names)
    if centres is not None:
        assert centres.tolist() == [i * int(chunk_len) + int(chunk_len) // 2 for i in range(int(num_chunks))]
    if out is not None:
        assert out.shape == (int(num_chunks),) and out.dtype == torch.int64
        for i, label in enumerate(out.tolist()):
            c = i * int(chunk_len) + int(chunk_len) // 2
            inside = [k for k, (s0, s1) in enumerate(segs.tolist())
                      if s0 <= c and (c <= s1 if inclusive_end else c < s1)]
            assert label == (int(labels[inside[0]]) + 1 if inside else 0)
            assert len({int(labels[k]) for k in inside}) <= 1  # two classes on one centre frame: an error


@covers(resample_indices)
@given(num_frames=sizes(10 ** 5), source_fps=hostile_numbers(), target_fps=hostile_numbers())
def test_resample_indices(num_frames, source_fps, target_fps):
    with time_bound(2.0):
        idx = expect_clear(resample_indices, num_frames, source_fps, target_fps,
                           names=("num_frames", "source_fps", "target_fps"))
    if idx is not None:
        assert len(idx) <= int(num_frames)
        assert (idx[1:] > idx[:-1]).all() and ((idx >= 0) & (idx < int(num_frames))).all()


@covers(read_video_frames)
@given(target_fps=st.one_of(hostile_numbers(), st.none()))
def test_read_video_frames_checks_before_decoding(target_fps, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "missing.mp4"
    with time_bound(2.0):
        expect_clear(read_video_frames, path, target_fps=target_fps, names=("target_fps", "PyAV"),
                     errors=(ValueError, TypeError, ImportError))


# ----------------------------------------------------------------------------- flow and trajectories


def frame_pairs(valid: bool) -> st.SearchStrategy:
    if valid:
        return st.tuples(small(2, 20), small(2, 20), st.integers(0, 2 ** 16)).map(
            lambda t: (lambda a: (a, a.roll(1, -1)))(torch.rand(int(t[0]), int(t[1]), generator=torch.Generator().manual_seed(t[2]))))
    return st.tuples(images(max_side=20), images(max_side=20))


@covers(TorchFlow, TorchFlow.__call__, OpenCVFlow)
@given(a=one_hostile(levels=(small(1, 3), sizes(10 ** 12)), iterations=(small(1, 5), sizes(10 ** 12)),
                     window=(st.sampled_from([1, 3, 9, 2 ** 31 - 1, 2 ** 61 + 1]), sizes(10 ** 12)),
                     frames=(frame_pairs(True), frame_pairs(False))))
def test_flow_backends(a):
    with time_bound(5.0):
        flow = expect_clear(TorchFlow, a["levels"], a["iterations"], a["window"],
                            names=("levels", "iterations", "window"))
        out = None if flow is None else expect_clear(flow, *a["frames"], names=("frame_a", "frame_b"))
    if out is not None:
        assert out.shape == (2, *a["frames"][0].shape[-2:]) and out.dtype == torch.float32 and torch.isfinite(out).all()
    expect_clear(OpenCVFlow, names=("OpenCV", "method"), errors=(ValueError, TypeError, ImportError))


@covers(pixel_trajectories, stacked_flow)
@given(frames=videos(), center=sizes(10 ** 12), k=sizes(6),
       estimator=st.sampled_from(["still", "transposed", "torch"]))
def test_trajectories(frames, center, k, estimator):
    flow = {"still": still, "transposed": lambda a, b: still(a, b).permute(1, 2, 0),
            "torch": TorchFlow(levels=1, iterations=1)}[estimator]
    for fn in (pixel_trajectories, stacked_flow):
        with time_bound(5.0):
            out = expect_clear(fn, frames, center, k=k, flow=flow,
                               names=("frames", "center", "k", "flow", "frame_a", "frame_b"))
        if out is not None:
            assert out.shape == (2, 2 * int(k), *frames.shape[-2:])


@covers(TrajectoryConv, TrajectoryConv.forward)
@given(k=sizes(6), out_channels=sizes(16), time_kernel=st.one_of(st.none(), sizes(16)),
       shape=st.lists(st.integers(0, 6), min_size=3, max_size=6))
def test_trajectory_conv(k, out_channels, time_kernel, shape):
    with time_bound(2.0):
        conv = expect_clear(TrajectoryConv, k, out_channels, time_kernel, names=("k", "out_channels", "time_kernel"))
        if conv is None:
            return
        x = torch.rand(*shape)
        out = expect_clear(conv, x, names=("input",), errors=(ValueError, TypeError, RuntimeError)
                           if 0 in shape else (ValueError, TypeError))
    if out is not None:
        frames, kernel = 2 * int(k), int(time_kernel) if time_kernel is not None else 2 * int(k)
        assert out.shape == (shape[0], int(out_channels) * (frames - kernel + 1), *shape[-2:])


# ----------------------------------------------------------------------------- tracker, crops, streams


@st.composite
def flows(draw, max_chunks: int = 4, max_side: int = 16) -> torch.Tensor:
    t, h, w = draw(st.integers(0, max_chunks)), draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    shape = draw(st.sampled_from([(t, 2, h, w), (t, h, w), (t, 2, h, w), (t, h, w), (t, 3, h, w), (h, w)]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 16)))
    f = torch.randn(*shape, generator=g) * draw(st.sampled_from([1.0, 1e30, 1e-30]))
    if f.numel() and draw(st.integers(0, 3)) == 0:
        f.view(-1)[draw(st.integers(0, f.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return f.to(draw(st.sampled_from([torch.float32, torch.float64, torch.int64])))


@covers(FlowTracker, FlowTracker.track, FlowTracker.best)
@given(a=one_hostile(box=(st.tuples(small(1, 6), small(1, 6)), pairs(32)),
                     threshold=(st.floats(0, 50), hostile_numbers()),
                     init=(st.none(), st.tuples(sizes(10 ** 12), sizes(10 ** 12)))),
       f=flows())
@example(a={"box": (2, 2), "threshold": 1.0, "init": None}, f=torch.full((2, 2, 6, 6), float("nan")))  # issue 27
def test_flow_tracker(a, f):
    names = ("box_size", "threshold", "flows", "init", "magnitude")
    with time_bound(2.0):
        tracker = expect_clear(FlowTracker, a["box"], a["threshold"], names=names)
        if tracker is None:
            return
        boxes_out = expect_clear(tracker.track, f, a["init"], names=names)
        best = expect_clear(tracker.best, f[0] if f.dim() == 3 and len(f) else f, names=names)
    if boxes_out is not None:
        assert torch.isfinite(f).all()  # a track only from finite flow: NaN flow is no evidence of a still person
        h, w = f.shape[-2:]
        assert boxes_out.shape == (f.shape[0], 4)
        assert ((boxes_out[:, 2] - boxes_out[:, 0]) == tracker.box_w).all()
        assert ((boxes_out[:, 0] >= 0) & (boxes_out[:, 2] <= w) & (boxes_out[:, 1] >= 0) & (boxes_out[:, 3] <= h)).all()
    if best is not None:
        assert math.isfinite(best[2])


@covers(crop_boxes)
@given(b=boxes(max_boxes=4), side=st.integers(1, 12), channels=st.sampled_from([1, 3]), size=st.one_of(st.none(), pairs(16)),
       dtype=st.sampled_from([torch.float32, torch.uint8]))
def test_crop_boxes(b, side, channels, size, dtype):
    t = b.shape[0] if b.dim() == 2 else 2
    frames = (torch.rand(t, channels, side, side) * 200).to(dtype)
    with time_bound(2.0):
        out = expect_clear(crop_boxes, frames, b, size, names=("frames", "boxes", "size"))
    if out is not None:
        assert out.shape[:2] == (t, channels) and out.dtype == dtype
        if size is not None:
            assert out.shape[2:] == (int(size[0]), int(size[1]))


@covers(MultiStream, MultiStream.forward, stream_inputs)
@given(proj_dim=sizes(32), dims=st.tuples(sizes(8), sizes(8)), rows=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       frames=videos(max_frames=14, max_side=10), chunk_len=sizes(8), k=sizes(3), crop=st.one_of(st.none(), pairs(8)),
       box=st.integers(1, 12))
@example(proj_dim=4, dims=(2, 2), rows=(1, 1), frames=torch.zeros(0, 1, 4, 4, dtype=torch.uint8), chunk_len=1, k=1,
         crop=None, box=1)  # uint8 frames and no chunk (found by the thorough profile)
def test_multistream_and_stream_inputs(proj_dim, dims, rows, frames, chunk_len, k, crop, box):
    with time_bound(5.0):
        fuse = expect_clear(MultiStream, {"a": nn.Identity(), "b": nn.Identity()}, proj_dim,
                            {"a": dims[0], "b": dims[1]}, names=("streams", "proj_dim", "feature_dims"))
        if fuse is not None:
            inputs = {"a": torch.rand(rows[0], int(dims[0])), "b": torch.rand(rows[1], int(dims[1]))}
            out = expect_clear(fuse, inputs, names=("inputs",))
            if out is not None:
                assert out.shape == (rows[0], int(proj_dim))
        out = expect_clear(stream_inputs, frames, FlowTracker((box, box), 1.0), chunk_len=chunk_len, k=k, flow=still,
                           crop_size=crop, names=("frames", "tracker", "chunk_len", "k", "crop_size", "box_size",
                                                  "flows", "center", "frame_a"))
    if out is not None:
        n = frames.shape[0] // int(chunk_len)
        assert out["boxes"].shape == (n, 4) and out["frame_traj"].shape == (n, 2, 2 * int(k), *frames.shape[-2:])
        assert out["crop_rgb"].shape[:2] == (n, frames.shape[1])


# ----------------------------------------------------------------------------- sequence

VALID_HEAD = {"shape": [4, 2], "in_dim": 3, "hidden": 2, "num_classes": 2, "fill": 0.5, "cont": "ones", "window": 2,
              "k": 2}
VALID_LOSS = {"target": 1, "dtype": torch.int64, "wrong": "none", "mode": "per_direction", "reduction": "mean",
              "ignore_index": -100, "prob": 0.3}


@covers(BiLSTMHead, BiLSTMHead.forward, BiLSTMHead.directions, stateful_windows, memory_limited_scores)
@given(a=one_hostile(
    shape=(st.tuples(st.integers(0, 5), st.integers(1, 3)).map(list), st.lists(st.integers(0, 5), min_size=1, max_size=4)),
    in_dim=(small(1, 6), sizes(8)), hidden=(small(1, 6), sizes(8)), num_classes=(small(1, 5), st.one_of(st.none(), sizes(6))),
    fill=(st.floats(-2, 2), FLOATS), cont=(st.sampled_from(["none", "ones"]), st.sampled_from(["half", "wrong_shape"])),
    window=(small(1, 6), hostile_numbers()), k=(small(1, 8), hostile_numbers())))
@example(a={**VALID_HEAD, "cont": "half"})  # indicators other than 0 / 1 are refused
@example(a={**VALID_HEAD, "fill": float("nan")})
@example(a={**VALID_HEAD, "shape": [0, 1], "cont": "half"})  # no chunks: nothing to refuse
def test_bilstm_head(a):
    shape, in_dim, hidden, num_classes, fill, cont, window, k = (a[n] for n in ("shape", "in_dim", "hidden", "num_classes",
                                                                                "fill", "cont", "window", "k"))
    names = ("in_dim", "hidden", "num_classes", "x", "cont", "state", "window", "k")
    with time_bound(5.0):
        head = expect_clear(BiLSTMHead, in_dim, hidden, num_classes, names=names)
        if head is None:
            return
        if len(shape) == 2:  # the valid shape: [T, N, in_dim]
            shape = [*shape, head.forward_cell.input_size]
        x = torch.full(shape, fill)
        c = {"none": None, "ones": torch.ones(shape[:2]), "half": torch.full(shape[:2], 0.5),
             "wrong_shape": torch.ones(shape[:1])}[cont]
        out = expect_clear(head, x, None, c, names=names)
        windows = expect_clear(stateful_windows, head, x, window, names=names)
        if windows is not None:
            windows = expect_clear(list, windows, names=names)
        limited = expect_clear(memory_limited_scores, head, x, k, names=names)
    if cont == "wrong_shape" or (cont == "half" and shape[0] * shape[1]):
        assert out is None  # indicators other than 0/1, or of another shape, are refused
    if out is not None:
        scores, _ = out
        assert scores.shape == (*shape[:2], int(num_classes))
        if math.isfinite(fill) and abs(fill) < 1e30:
            torch.testing.assert_close(scores.sum(-1), torch.ones(shape[:2]))
    if windows is not None:
        assert sum(w["end"] - w["start"] for w in windows) == shape[0]
    if limited is not None:
        assert limited.shape == (*shape[:2], int(num_classes))


@covers(BiLSTMHead.loss)
@given(t=st.integers(0, 5), a=one_hostile(
    target=(st.integers(0, 2), st.sampled_from([3, 5, -1, -101])),
    dtype=(st.sampled_from([torch.int64, torch.int32]), st.sampled_from([torch.float32, torch.bool])),
    wrong=(st.just("none"), st.sampled_from(["targets_shape", "outputs_key", "outputs_width"])),
    mode=(st.sampled_from(["per_direction", "joint"]), st.sampled_from(["both", None])),
    reduction=(st.sampled_from(["mean", "sum"]), st.sampled_from(["none", 1])),
    ignore_index=(st.sampled_from([-100, 1, np.int64(2)]), hostile_numbers()),
    prob=(st.floats(0, 1), FLOATS)))
@example(t=2, a={**VALID_LOSS, "target": 3})  # out of range: a clear error, not an IndexError
@example(t=2, a={**VALID_LOSS, "target": -1})
def test_bilstm_loss(t, a):
    target, dtype, wrong, mode, reduction, ignore_index, prob = (a[k] for k in ("target", "dtype", "wrong", "mode",
                                                                                "reduction", "ignore_index", "prob"))
    head = BiLSTMHead(4, 3, 3)
    f = torch.full((t, 2, 3), prob)
    outputs = {"forward": f, "backward": f.flip(-1)}
    targets = torch.full((t, 2), target, dtype=torch.int64).to(dtype)
    if wrong == "targets_shape":
        targets = targets[:, 0]
    elif wrong == "outputs_key":
        outputs = {"forward": f}
    elif wrong == "outputs_width":
        outputs = {"forward": f[..., :2], "backward": f[..., :2]}
    with time_bound(2.0):
        losses = expect_clear(head.loss, outputs, targets, mode=mode, reduction=reduction, ignore_index=ignore_index,
                              names=("outputs", "targets", "mode", "reduction", "ignore_index"))
    if losses is not None:
        assert set(losses) == ({"loss_joint"} if mode == "joint" else {"loss_forward", "loss_backward"})
        if 0 <= prob <= 1:
            assert all(v.item() >= 0 and not math.isnan(v.item()) for v in losses.values())


@covers(continuation_indicators)
@given(labels=st.one_of(st.lists(st.integers(-3, 3), max_size=12), st.lists(st.floats(0, 3), min_size=1, max_size=4),
                        st.just([[[1]]]), st.just(torch.zeros(3, dtype=torch.bool))), rows=st.booleans())
def test_continuation_indicators(labels, rows):
    lab = torch.as_tensor(labels)
    if rows and lab.dim() == 1 and not lab.is_floating_point():
        lab = torch.stack([lab, lab.flip(0)], 1)
    with time_bound(2.0):
        cont = expect_clear(continuation_indicators, lab, names=("labels",))
    if cont is not None:
        assert cont.shape == lab.shape and cont.dtype == torch.float32
        if len(lab):
            assert (cont[0] == 0).all()
            assert torch.equal(cont[1:] == 0, lab[1:] != lab[:-1])


@covers(clips_from_scores)
@given(a=one_hostile(scores=(st.lists(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=2, max_size=2),
                                      max_size=30),
                             st.one_of(st.lists(st.lists(FLOATS, min_size=2, max_size=2), max_size=30),
                                       st.lists(FLOATS, max_size=5), st.just([[[0.5]]]))),
                     chunk_len=(small(1, 8), hostile_numbers()), m=(small(1, 6), hostile_numbers()),
                     max_clips=(small(1, 50), hostile_numbers()),
                     inclusive_end=(st.booleans(), st.sampled_from([np.bool_(True), 0, "no"]))))
def test_clips_from_scores(a):
    scores, chunk_len, max_clips, inclusive_end = a["scores"], a["chunk_len"], a["max_clips"], a["inclusive_end"]
    with time_bound(2.0):
        clips = expect_clear(clips_from_scores, scores, chunk_len, a["m"], max_clips, inclusive_end=inclusive_end,
                             names=("scores", "chunk_len", "m", "max_clips", "inclusive_end"))
    if clips is not None:
        s = np.asarray(scores, dtype=np.float64).reshape(-1, 2)
        shift = 1 if inclusive_end else 0
        for c, kept in clips.items():
            assert len(kept) <= int(max_clips) and (len(kept) >= 1 or len(s) == 0)
            covered = np.zeros(len(s), bool)
            for start, end, score in kept:
                assert start % int(chunk_len) == 0 and (end + shift) % int(chunk_len) == 0
                first, last = start // int(chunk_len), (end + shift) // int(chunk_len) - 1
                assert score == s[first : last + 1, c].max()
                assert not covered[first : last + 1].any()
                covered[first : last + 1] = True
