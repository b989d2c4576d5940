"""Hostile input for the heads (scalekit.heads) and their detector-level blocks:
construction arguments, proposals, targets, image sizes, class features. Each call
gives a result that keeps the contract or a clear error naming the argument."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalekit.heads import DecoupledHead, RFCNHead, class_mean_features, discover_superclasses
from tests.fuzz.hostile import boxes, covers, expect_clear, hostile_floats, hostile_ints, hostile_numbers, time_bound

# a head, its feature map and sane proposals are the same for every example: built once
_SMALL = dict(pool_size=2, spatial_scale=1 / 8, mid_channels=4)
FEATURES = torch.randn(1, 8, 12, 12, generator=torch.Generator().manual_seed(0))
SLOW = settings(suppress_health_check=[HealthCheck.too_slow])


def _heads():
    torch.manual_seed(0)
    return [RFCNHead(8, 3, **_SMALL), DecoupledHead(8, 3, torch.tensor([0, 1, 1]), fine_channels=4, **_SMALL)]


HEADS = _heads()
HEAD_ARGS = ("in_channels", "num_classes", "pool_size", "spatial_scale", "sampling_ratio", "mid_channels")


@covers(RFCNHead.__init__, DecoupledHead.__init__)
@given(name=st.sampled_from(HEAD_ARGS + ("fine_channels", "class_loss_weight")), value=hostile_numbers(),
       decoupled=st.booleans())
def test_construction_checks_every_number(name, value, decoupled):
    """Any number a careless caller passes: a head that runs, or an error naming the argument."""
    if name in ("fine_channels", "class_loss_weight") and not decoupled:
        decoupled = True
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and abs(int(value)) > 64 \
            and name not in ("spatial_scale", "class_loss_weight", "sampling_ratio"):
        value = 10 ** 6  # a valid but huge width: must be refused or built; keep memory bounded below
    if name == "sampling_ratio" and isinstance(value, (int, np.integer)) and abs(int(value)) > 64:
        value = 64  # the op's own bound on samples per bin is fuzzed with the op (tests/fuzz of ops)
    kwargs = dict(in_channels=8, num_classes=3, **_SMALL)
    if decoupled:
        kwargs["fine_channels"] = 4
    kwargs[name] = value
    cls = DecoupledHead if decoupled else RFCNHead
    with time_bound(5.0):
        try:
            head = expect_clear(cls, **kwargs, names=(name,))
        except RuntimeError as exc:  # only an allocation refused by torch for a valid, enormous width
            assert "memory" in str(exc).lower() or "allocate" in str(exc).lower(), exc
            return
    if head is None:
        return
    assert head.num_classes >= 1 and head.pool_size >= 1
    if head.spatial_scale is not None:
        assert math.isfinite(head.spatial_scale) and head.spatial_scale > 0
    if name in ("in_channels", "mid_channels", "fine_channels") and int(value) > 64:
        return  # built with a huge width: running it is not the point
    features = torch.randn(1, head.reduce[0].in_channels if hasattr(head, "reduce") else head.fine[0].in_channels,
                           12, 12)
    out = head(features, [torch.tensor([[0.0, 0, 40, 40]])], [(96, 96)] if head.spatial_scale is None else None)
    assert torch.isfinite(out["det_logits"]).all()


@covers(RFCNHead.forward, DecoupledHead.forward, RFCNHead.postprocess, DecoupledHead.postprocess,
        RFCNHead.postprocess_objectness)
@given(p=boxes(max_boxes=6), which=st.integers(0, 1), sizes=st.one_of(st.none(), st.sampled_from(
    [[(96, 96)], [(0, 96)], [(math.nan, 96)], [(96, 96), (96, 96)], [(-5, 96)], [(10 ** 6, 96)]])))
def test_forward_and_postprocess_on_hostile_proposals(p, which, sizes):
    head = HEADS[which]
    with time_bound(5.0):
        out = expect_clear(head, FEATURES, [p], sizes, names=("proposals", "boxes", "image_sizes", "spatial_scale",
                                                              "proposals[0]"))
        if out is None:
            return
        assert out["rois"].shape == (p.shape[0], 5) and out["det_logits"].shape[0] == p.shape[0]
        dets = expect_clear(head.postprocess, out, sizes, names=("image_sizes",))
        objects = head.postprocess_objectness(out, [(96, 96)])
    if dets is not None:
        assert len(dets) == 1 and (dets[0]["labels"] >= 1).all() and (dets[0]["labels"] <= 3).all()
        scores = dets[0]["scores"]
        assert (scores[~scores.isnan()] >= 0).all()
    assert len(objects) == 1 and (objects[0]["labels"] == 1).all()


@covers(RFCNHead.loss, DecoupledHead.loss)
@given(gt=boxes(max_boxes=4), labels=st.lists(hostile_ints(), min_size=0, max_size=4),
       ignore=st.one_of(st.none(), boxes(max_boxes=3)), which=st.integers(0, 1))
def test_loss_on_hostile_targets(gt, labels, ignore, which):
    head = HEADS[which]
    out = head(FEATURES, [torch.tensor([[0.0, 0, 40, 40], [30, 30, 90, 90], [50, 10, 90, 60]])])
    target = {"boxes": gt, "labels": torch.tensor(labels, dtype=torch.int64)}
    if ignore is not None:
        target["ignore_boxes"] = ignore
    with time_bound(5.0):
        losses = expect_clear(head.loss, out, [target], names=("targets[0]", "targets[0]['labels']", "boxes",
                                                               "ignore_boxes", "labels"))
    if losses is not None:
        finite_gt = gt.dim() == 2 and gt.shape[-1] == 4 and bool(torch.isfinite(gt.float()).all())
        if finite_gt and (ignore is None or bool(torch.isfinite(ignore.float()).all())):
            assert all(torch.isfinite(v) for v in losses.values()), losses


@covers(discover_superclasses)
@given(c=st.integers(0, 7), d=st.integers(0, 3), k=hostile_numbers(), fill=hostile_floats(),
       iters=st.one_of(st.integers(-2, 3), hostile_numbers()), seed=st.integers(0, 5))
def test_discover_superclasses_on_hostile_features(c, d, k, fill, iters, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 3, (c, d), generator=g).double()
    if c and d and seed % 2:
        x[0, 0] = fill  # NaN, inf, huge or tiny (x is float64)
    with time_bound(5.0):
        groups = expect_clear(discover_superclasses, x, k, iters=iters, names=("k", "class_features", "iters"))
    if groups is not None:
        assert groups.shape == (c,) and groups.unique().numel() == int(k)  # exactly k super-classes
        assert groups[0] == 0


@covers(DecoupledHead.add_class)
@given(n=st.integers(0, 3), m=st.integers(0, 3), fill=hostile_floats(), superclass=st.one_of(st.none(), hostile_ints()),
       steps=hostile_ints())
@SLOW
def test_add_class_on_hostile_features(n, m, fill, superclass, steps):
    head = DecoupledHead(8, 3, torch.tensor([0, 1, 1]), fine_channels=4, **_SMALL)
    pos, neg = torch.rand(n, 4), torch.rand(m, 4)
    if n:
        pos[0, 0] = torch.tensor(fill, dtype=torch.float64).float()  # beyond float32: inf
    steps = steps if abs(steps) < 50 else 5
    with time_bound(10.0):
        label = expect_clear(head.add_class, pos, neg, superclass, steps=steps,
                             names=("positive_features", "negative_features", "superclass", "steps", "add_class"))
    if label is not None:
        assert label == 4 and head.num_classes == 4 and len(head.superclass_of) == len(head.nms_group_of) == 4
        assert torch.isfinite(head.fine_cls.weight).all()
    else:
        assert head.num_classes == 3 and len(head.superclass_of) == 3  # a refused call changes nothing


@covers(class_mean_features)
@given(labels=st.lists(hostile_ints(), min_size=0, max_size=5), num_classes=hostile_ints())
def test_class_mean_features_on_hostile_labels(labels, num_classes):
    num_classes = num_classes if num_classes < 10 ** 5 else 10 ** 5  # valid but huge: memory, not the point
    feats = torch.rand(len(labels), 3)
    loader = [(feats, torch.tensor(labels, dtype=torch.int64))]
    with time_bound(5.0):
        means = expect_clear(class_mean_features, torch.nn.Identity(), loader, num_classes,
                             names=("labels", "num_classes", "loader", "classes"))
    if means is not None:
        assert means.shape == (num_classes, 3) and torch.isfinite(means).all()


@pytest.mark.parametrize("bad", [[0, 1, 1, 2], [[0, 1, 2]], ["a", "b", "c"], [0.0, 1.0, 2.0], [0, 1, -3]])
def test_superclass_and_nms_group_ids(bad):
    for name in ("superclass_of", "nms_groups"):
        with pytest.raises((ValueError, TypeError), match=name):
            DecoupledHead(8, 3, **{name: bad}, fine_channels=4, **_SMALL)
