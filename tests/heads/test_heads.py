"""Detection heads: shapes, the decoupled score, label assignment, fitting,
super-class discovery, grouped NMS and new classes."""

import pytest
import torch

from scalekit.boxes import decode_boxes, encode_boxes, match_rois
from scalekit.heads import DecoupledHead, RFCNHead, class_mean_features, discover_superclasses
from scalekit.heads._common import assign, hard_examples
from scalekit.ops import batched_nms, nms


def _batch(seed=0, n=2, in_channels=16, size=24, stride=8):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, in_channels, size, size, generator=g)
    targets, proposals = [], []
    for _ in range(n):
        xy = torch.rand(3, 2, generator=g) * 100
        wh = 30 + torch.rand(3, 2, generator=g) * 60
        boxes = torch.cat([xy, xy + wh], 1)
        targets.append({"boxes": boxes, "labels": torch.randint(1, 6, (3,), generator=g)})
        jitter = boxes.repeat(6, 1) + torch.randn(18, 4, generator=g) * 6
        background = torch.rand(10, 2, generator=g) * 150
        proposals.append(torch.cat([jitter, torch.cat([background, background + 25], 1)]))
    return features, proposals, targets


class TestShapes:
    @pytest.mark.parametrize("k, p, c", [(1, 3, 5), (3, 7, 12), (12, 2, 12)])
    def test_decoupled(self, k, p, c):
        head = DecoupledHead(16, c, torch.arange(c) % k, pool_size=p, spatial_scale=1 / 8, mid_channels=8, fine_channels=8)
        features, proposals, _ = _batch()
        out = head(features, proposals)
        r = sum(len(q) for q in proposals)
        assert out["det_logits"].shape == (r, k + 1)
        assert out["box_deltas"].shape == (r, 4) and out["class_logits"].shape == (r, c)
        assert head.super_maps.out_channels == (k + 1) * p * p and head.box_maps.out_channels == 4 * p * p

    @pytest.mark.parametrize("deformable", [False, True])
    def test_rfcn(self, deformable):
        head = RFCNHead(16, 5, pool_size=3, spatial_scale=1 / 8, mid_channels=8, deformable=deformable)
        features, proposals, targets = _batch()
        out = head(features, proposals)
        assert out["det_logits"].shape == (56, 6) and out["box_deltas"].shape == (56, 4)
        sum(head.loss(out, targets).values()).backward()
        assert head.cls_maps.weight.grad.abs().sum() > 0


class TestDecoupledScore:
    def test_objectness_times_class_probability(self):
        head = DecoupledHead(16, 7, None, pool_size=3, spatial_scale=1 / 8, mid_channels=8, fine_channels=8)
        assert head.num_superclasses == 1
        features, proposals, _ = _batch()
        out = head(features, proposals)
        assert out["det_logits"].shape[1] == 2  # background, object
        objectness = out["det_logits"].softmax(1)[:, 1:]
        assert torch.equal(head.class_scores(out), objectness * out["class_logits"].softmax(1))

    def test_each_class_uses_its_superclass(self):
        groups = torch.tensor([2, 0, 1, 2, 0])
        head = DecoupledHead(16, 5, groups, pool_size=2, spatial_scale=1 / 8, mid_channels=8, fine_channels=8)
        out = head(*_batch()[:2])
        p_super, p_cls = out["det_logits"].softmax(1), out["class_logits"].softmax(1)
        for c in range(5):
            assert torch.equal(head.class_scores(out)[:, c], p_super[:, 1 + groups[c]] * p_cls[:, c])


class TestLabels:
    def test_match_rois_by_hand(self):
        gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])
        rois = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20], [20, 20, 40, 42], [100, 100, 110, 110], [5, 0, 15, 10]])
        # IoUs: 1 (gt 0), 0.5 (gt 0), 20*20/(20*22) = 0.91 (gt 1), 0, 50/150 = 0.33
        assert match_rois(rois, gt).tolist() == [0, 0, 1, -1, -1]
        assert match_rois(rois, gt, inclusive=False).tolist() == [0, -1, 1, -1, -1]
        assert match_rois(rois, gt[:0]).tolist() == [-1] * 5

    def test_rfcn_uses_ge_and_rfcn3000_gt(self):
        proposals = [torch.tensor([[0.0, 0, 10, 20], [0, 0, 10, 10]])]
        targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([4])}]
        assert assign(proposals, targets, inclusive=True)[0].tolist() == [4, 4]
        assert assign(proposals, targets, inclusive=False)[0].tolist() == [0, 4]

    def test_box_coding_round_trip(self):
        g = torch.Generator().manual_seed(0)
        rois = torch.rand(50, 2, generator=g) * 100
        rois = torch.cat([rois, rois + 5 + torch.rand(50, 2, generator=g) * 50], 1)
        gt = rois + torch.randn(50, 4, generator=g)
        torch.testing.assert_close(decode_boxes(rois, encode_boxes(rois, gt)), gt, rtol=1e-5, atol=1e-4)

    def test_ohem_keeps_the_hardest_per_image(self):
        loss = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.8, 0.2])
        image = torch.tensor([0, 0, 0, 1, 1, 1])
        everyone = torch.ones(6, dtype=torch.bool)
        assert hard_examples(loss, image, 1, everyone).tolist() == [False, True, False, False, True, False]
        assert hard_examples(loss, image, None, everyone).all()
        ignored = torch.tensor([True, False, True, True, True, True])  # RoI 1 is ignored: never a hard example
        assert hard_examples(loss, image, 1, ignored).tolist() == [False, False, True, False, True, False]


@pytest.mark.parametrize("which", ["rfcn", "decoupled"])
def test_loss_decreases_fitting_one_batch(which):
    torch.manual_seed(0)
    features, proposals, targets = _batch()
    if which == "rfcn":
        head = RFCNHead(16, 5, pool_size=3, spatial_scale=1 / 8, mid_channels=16)
        step = lambda: sum(head.loss(head(features, proposals), targets, ohem=16).values())  # noqa: E731
    else:
        head = DecoupledHead(16, 5, torch.tensor([0, 1, 0, 1, 1]), pool_size=3, spatial_scale=1 / 8,
                             mid_channels=16, fine_channels=16, class_loss_weight=1.0)
        step = lambda: sum(head.loss(head(features, proposals), targets, ohem=16).values())  # noqa: E731
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = step().item()
    for _ in range(60):
        opt.zero_grad()
        loss = step()
        loss.backward()
        opt.step()
    assert step().item() < 0.5 * first


class TestSuperclasses:
    def test_recovers_well_separated_clusters_and_is_deterministic(self):
        g = torch.Generator().manual_seed(0)
        centres = torch.randn(5, 32, generator=g) * 10
        truth = torch.randint(0, 5, (60,), generator=g)
        feats = centres[truth] + torch.randn(60, 32, generator=g) * 0.5
        found = discover_superclasses(feats, 5, seed=3)
        same_truth = truth[:, None] == truth[None, :]
        assert torch.equal(found[:, None] == found[None, :], same_truth)
        assert torch.equal(discover_superclasses(feats, 5, seed=3), found)
        assert found[0] == 0  # numbered by first appearance

    def test_edges(self):
        feats = torch.randn(6, 3)
        assert discover_superclasses(feats, 1).tolist() == [0] * 6
        assert sorted(discover_superclasses(feats, 6).tolist()) == list(range(6))
        with pytest.raises(ValueError, match=r"k must lie in \[1, C\] = \[1, 6\]"):
            discover_superclasses(feats, 7)
        with pytest.raises(ValueError, match="must be finite"):
            discover_superclasses(torch.full((3, 2), float("nan")), 2)

    def test_class_mean_features_missing_class(self):
        loader = [(torch.ones(2, 3), torch.tensor([0, 0]))]
        with pytest.raises(ValueError, match=r"no samples for classes \[1, 2\]"):
            class_mean_features(torch.nn.Identity(), loader, num_classes=3)


class TestPostprocess:
    def _head_and_output(self, groups):
        torch.manual_seed(1)
        head = DecoupledHead(16, 6, groups, pool_size=2, spatial_scale=1 / 8, mid_channels=8, fine_channels=8,
                             nms_groups="superclass")
        features, proposals, _ = _batch(seed=2)
        with torch.no_grad():
            out = head(features, proposals)
            out["class_logits"] *= 20  # confident classes, so that many candidates pass the threshold
            out["box_deltas"] *= 0
        return head, out, proposals

    def _manual(self, head, out, proposals, nms_fn):
        scores = head.class_scores(out)
        result, start = [], 0
        for p in proposals:
            p = decode_boxes(p, torch.zeros_like(p)).clamp(0, 1000)  # zero deltas, as the output holds; clipped
            s = scores[start : start + len(p)]
            roi, cls = (s > 0.01).nonzero(as_tuple=True)
            keep = nms_fn(p[roi], s[roi, cls], cls)[:100]
            result.append((p[roi][keep], s[roi, cls][keep], cls[keep] + 1))
            start += len(p)
        return result

    def test_every_class_its_own_group_is_per_class_nms(self):
        head, out, proposals = self._head_and_output(torch.arange(6))
        got = head.postprocess(out, [(1000, 1000)] * 2)
        expected = self._manual(head, out, proposals, lambda b, s, c: batched_nms(b, s, c, 0.3))
        for g, (boxes, scores, labels) in zip(got, expected):
            assert len(labels) > 5
            assert torch.equal(g["boxes"], boxes) and torch.equal(g["scores"], scores) and torch.equal(g["labels"], labels)

    def test_one_group_is_class_agnostic_nms(self):
        head, out, proposals = self._head_and_output(torch.zeros(6, dtype=torch.int64))
        got = head.postprocess(out, [(1000, 1000)] * 2)
        expected = self._manual(head, out, proposals, lambda b, s, c: nms(b, s, 0.3))
        for g, (boxes, _, labels) in zip(got, expected):
            assert torch.equal(g["boxes"], boxes) and torch.equal(g["labels"], labels)

    def test_rfcn_postprocess_clips_to_the_image(self):
        head = RFCNHead(16, 5, pool_size=3, spatial_scale=1 / 8, mid_channels=8)
        features, proposals, _ = _batch()
        dets = head.postprocess(head(features, proposals), image_sizes=[(50, 60), (50, 60)], score_threshold=0.0)
        for d in dets:
            assert (d["boxes"][:, 2] <= 60).all() and (d["boxes"][:, 3] <= 50).all() and (d["boxes"] >= 0).all()
            assert len(d["boxes"]) <= 100 and (d["labels"] >= 1).all() and (d["labels"] <= 5).all()


def test_new_class_from_classification_data():
    torch.manual_seed(0)
    head = DecoupledHead(16, 4, torch.tensor([0, 0, 1, 1]), pool_size=2, spatial_scale=1 / 8, mid_channels=8, fine_channels=8)
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(8, generator=g)
    positives = torch.relu(direction + 0.1 * torch.randn(10, 8, generator=g)) * 3
    negatives = torch.relu(torch.randn(40, 8, generator=g))
    old_pred = (negatives @ head.fine_cls.weight.flatten(1).T + head.fine_cls.bias).argmax(1)
    label = head.add_class(positives, negatives, superclass=1)
    assert label == 5 and head.num_classes == 5 and head.superclass_of.tolist() == [0, 0, 1, 1, 1]
    logits = lambda f: f @ head.fine_cls.weight.flatten(1).T + head.fine_cls.bias  # noqa: E731
    assert (logits(positives).argmax(1) == 4).float().mean() >= 0.9
    assert (logits(negatives).argmax(1) == old_pred).float().mean() >= 0.9
    out = head(*_batch()[:2])
    assert out["class_logits"].shape[1] == 5 and head.class_scores(out).shape[1] == 5


def test_bad_targets():
    head = RFCNHead(16, 5, pool_size=3, spatial_scale=1 / 8, mid_channels=8)
    features, proposals, targets = _batch()
    out = head(features, proposals)
    with pytest.raises(ValueError, match=r"targets\[1\]\['labels'\] holds \[0\] outside \[1, num_classes=5\]: "
                                         r"0 is the background"):
        head.loss(out, [targets[0], {"boxes": torch.zeros(1, 4), "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match="one dict per image"):
        head.loss(out, targets[:1])
    with pytest.raises(ValueError, match=r"ignore_boxes must be \[I, 4\]"):
        head.loss(out, [dict(targets[0], ignore_boxes=torch.zeros(3)), targets[1]])
    with pytest.raises(ValueError, match=r"proposals\[1\] must be \[L, 4\]"):
        head(features, [proposals[0], torch.zeros(3, 5)])
    with pytest.raises(ValueError, match=r"superclass_of must be \[C\] = \[5\]"):
        DecoupledHead(16, 5, torch.zeros(4, dtype=torch.int64))


@pytest.mark.parametrize("which", ["rfcn", "decoupled"])
def test_rois_on_ignore_boxes_are_neither_foreground_nor_background(which):
    features, proposals, targets = _batch()
    if which == "rfcn":
        head, key = RFCNHead(16, 5, pool_size=3, spatial_scale=1 / 8, mid_channels=8), "det_logits"
    else:
        head = DecoupledHead(16, 5, None, pool_size=3, spatial_scale=1 / 8, mid_channels=8, fine_channels=8)
        key = "det_logits"
    r = len(proposals[0]) - 1  # a background proposal of image 0
    ignored = [dict(targets[0], ignore_boxes=proposals[0][r:] + 1.0), targets[1]]  # IoU ~0.86 with it
    grads = []
    for t in (targets, ignored):
        out = head(features, proposals)
        out[key].retain_grad()
        sum(head.loss(out, t).values()).backward()
        grads.append(out[key].grad[r].abs().sum().item())
    assert assign(proposals, targets, inclusive=True)[0][r] == 0  # background without the ignore box
    assert assign(proposals, ignored, inclusive=True)[0][r] == -1  # ignored with it
    assert grads[0] > 0 and grads[1] == 0


def test_a_ground_truth_beats_an_overlapping_ignore_box():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    rois = [torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 12]])]
    t = [{"boxes": gt, "labels": torch.tensor([3]), "ignore_boxes": torch.tensor([[0.0, 0, 10, 12]])}]
    assert assign(rois, t, inclusive=True)[0].tolist() == [3, -1]


def test_fine_grained_scores_are_the_average_of_the_class_maps_inside_each_roi():
    """forward pools the branch's features, then classifies: the same as pooling C class maps."""
    from scalekit.ops import ps_roi_align

    torch.manual_seed(0)
    head = DecoupledHead(16, 40, torch.arange(40) % 4, pool_size=3, spatial_scale=1 / 8, mid_channels=8, fine_channels=12)
    torch.nn.init.normal_(head.fine_cls.bias)
    features, proposals, _ = _batch()
    proposals = [p.clamp(0, 24 * 8) for p in proposals]  # on the map
    maps = head.fine_cls(head.fine(features))  # [N, C, H, W]: one score map per class
    rois = torch.cat([torch.cat([torch.full((len(p), 1), float(i)), p], 1) for i, p in enumerate(proposals)])
    expected = ps_roi_align(maps, rois, 1, 1 / 8, -1).flatten(1)
    torch.testing.assert_close(head(features, proposals)["class_logits"], expected, rtol=1e-4, atol=1e-5)
