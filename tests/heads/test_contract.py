"""The heads' contract and what issue 20 (items 4, 6), 21 (item 3) and 27 ask of it:
RoIs built once, one output key per role, NMS groups apart from super-classes,
class-agnostic objectness detections, spatial scale checked or inferred, and
arguments checked at construction."""

import math

import numpy as np
import pytest
import torch
import torchvision

from scalekit.heads import DecoupledHead, RFCNHead, discover_superclasses

SMALL = dict(pool_size=3, spatial_scale=1 / 8, mid_channels=8)


def _heads(c=3):
    torch.manual_seed(0)
    return {"rfcn": RFCNHead(16, c, **SMALL),
            "decoupled": DecoupledHead(16, c, torch.arange(c) % 2, fine_channels=8, **SMALL)}


def _confident(head, out, roi_scores):
    """``out`` with zero box deltas and detection logits of objectness ``roi_scores`` per RoI."""
    out = {k: v.detach().clone() for k, v in out.items()}
    out["box_deltas"].zero_()
    p = torch.as_tensor(roi_scores, dtype=torch.float32)
    logits = torch.empty_like(out["det_logits"])
    logits[:, 0] = torch.log(1 - p)
    logits[:, 1:] = torch.log(p / (logits.shape[1] - 1))[:, None]  # the object share spread over D columns
    out["det_logits"] = logits
    return out


class TestOneContract:
    @pytest.mark.parametrize("which", ["rfcn", "decoupled"])
    def test_same_keys_for_the_same_role_and_objectness_is_one_minus_background(self, which):
        head = _heads()[which]
        proposals = [torch.tensor([[8.0, 8, 80, 100], [0, 0, 40, 40]]), torch.tensor([[16.0, 16, 128, 128]])]
        out = head(torch.randn(2, 16, 20, 20), proposals)
        assert {"rois", "det_logits", "box_deltas"} <= set(out)
        assert out["rois"].tolist() == [[0.0, 8, 8, 80, 100], [0, 0, 0, 40, 40], [1, 16, 16, 128, 128]]
        torch.testing.assert_close(head.objectness(out), 1 - out["det_logits"].softmax(1)[:, 0])
        assert head.class_scores(out).shape == (3, 3)

    @pytest.mark.parametrize("which", ["rfcn", "decoupled"])
    def test_loss_and_postprocess_use_the_rois_forward_returned(self, which):
        head = _heads()[which]
        proposals = [torch.tensor([[0.0, 0, 20, 20], [40, 40, 60, 60]])]
        out = _confident(head, head(torch.randn(1, 16, 20, 20), proposals), [0.9, 0.8])
        out["rois"] = out["rois"] + torch.tensor([0.0, 10, 10, 10, 10])  # moved after forward
        dets = head.postprocess_objectness(out, [(160, 160)])[0]
        assert sorted(dets["boxes"].tolist()) == [[10.0, 10, 30, 30], [50, 50, 70, 70]]
        # the moved RoI 0 matches this ground truth exactly: foreground, so a box loss on it
        gt = {"boxes": torch.tensor([[10.0, 10, 30, 30]]), "labels": torch.tensor([1])}
        assert head.loss(out, [gt])["loss_box"] == 0  # zero deltas, exact match: only if the moved RoIs were used
        gt_old = {"boxes": torch.tensor([[0.0, 0, 20, 20]]), "labels": torch.tensor([1])}
        assert head.loss(out, [gt_old])["loss_box"] == 0  # no RoI overlaps the old place: no foreground
        assert head.targets_for(out, [gt_old], inclusive=True, iou_threshold=0.5)[0].tolist() == [0, 0]
        assert head.targets_for(out, [gt], inclusive=True, iou_threshold=0.5)[0].tolist() == [1, 0]

    def test_objectness_detections_are_class_agnostic_with_nms(self):
        head = _heads()["decoupled"]
        proposals = [torch.tensor([[0.0, 0, 40, 40], [2, 2, 42, 42], [100, 100, 140, 140]])]
        out = _confident(head, head(torch.randn(1, 16, 20, 20), proposals), [0.6, 0.9, 0.7])
        dets = head.postprocess_objectness(out, [(160, 160)])[0]
        keep = torchvision.ops.nms(proposals[0], torch.tensor([0.6, 0.9, 0.7]), 0.3)
        assert dets["boxes"].tolist() == proposals[0][keep].tolist()
        torch.testing.assert_close(dets["scores"], torch.tensor([0.9, 0.7]))
        assert dets["labels"].tolist() == [1, 1]


class TestNMSGroups:
    def _two_classes_on_one_box(self, nms_groups, superclass_of=None):
        head = DecoupledHead(16, 2, superclass_of, fine_channels=8, nms_groups=nms_groups, **SMALL)
        out = head(torch.randn(1, 16, 20, 20), [torch.tensor([[0.0, 0, 40, 40], [1, 1, 41, 41]])])
        out = _confident(head, out, [0.9, 0.9])
        out["class_logits"] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # RoI 0 mostly class 1, RoI 1 mostly class 2
        return head.postprocess(out, [(160, 160)])[0]

    def test_k1_per_class_nms_keeps_two_classes_on_one_box(self):
        dets = self._two_classes_on_one_box("class")  # K = 1 (superclass_of None), NMS per class
        assert sorted(dets["labels"].tolist()) == [1, 2]
        # each class keeps its best RoI; its second RoI (IoU 0.9) is suppressed
        assert len(dets["labels"]) == 2

    @pytest.mark.parametrize("groups", ["agnostic", "superclass", torch.tensor([0, 0])])
    def test_one_nms_group_keeps_one_class_per_box(self, groups):
        dets = self._two_classes_on_one_box(groups)
        assert len(dets["labels"]) == 1

    def test_nms_groups_do_not_follow_superclasses(self):
        # two super-classes, yet one NMS group: still one detection; one super-class, two groups: two
        assert len(self._two_classes_on_one_box(torch.tensor([5, 5]), torch.tensor([0, 1]))["labels"]) == 1
        assert len(self._two_classes_on_one_box(torch.tensor([0, 3]), torch.tensor([0, 0]))["labels"]) == 2
        assert len(self._two_classes_on_one_box("superclass", torch.tensor([0, 1]))["labels"]) == 2

    @pytest.mark.parametrize("grouping, expected", [("class", 3), ("agnostic", 0), ("superclass", 1),
                                                    (torch.tensor([4, 4, 7]), 8)])
    def test_a_new_class_gets_an_nms_group(self, grouping, expected):
        head = DecoupledHead(16, 3, torch.tensor([0, 1, 1]), fine_channels=8, nms_groups=grouping, **SMALL)
        head.add_class(torch.rand(3, 8) + 1, torch.rand(6, 8), superclass=1, steps=5)
        assert head.nms_group_of.tolist()[-1] == expected and len(head.nms_group_of) == 4


    def test_checkpoints_without_nms_groups_load_with_the_constructors(self):
        old = DecoupledHead(16, 3, torch.tensor([0, 1, 1]), fine_channels=8, **SMALL).state_dict()
        del old["nms_group_of"]  # saved before NMS groups existed
        head = DecoupledHead(16, 3, torch.tensor([0, 1, 1]), fine_channels=8, nms_groups="agnostic", **SMALL)
        head.load_state_dict(old)  # strict
        assert head.nms_group_of.tolist() == [0, 0, 0]


class TestSpatialScale:
    def test_a_wrong_scale_is_an_error_that_names_the_right_one(self):
        head = RFCNHead(16, 2, pool_size=3, spatial_scale=1 / 16, mid_channels=8)
        features = torch.randn(1, 16, 4, 4)  # a 128x128 image at 1/32
        with pytest.raises(ValueError, match=r"spatial_scale=0.0625 \(1/16\) does not fit a 4x4 feature map .* "
                                             r"pass spatial_scale=1/32, or spatial_scale=None"):
            head(features, [torch.tensor([[0.0, 0, 64, 64]])], [(128, 128)])
        head(torch.randn(1, 16, 8, 8), [torch.tensor([[0.0, 0, 64, 64]])], [(128, 120)])  # right: no error

    @pytest.mark.parametrize("feature, image, scale", [(8, (128, 128), 1 / 16), (4, (128, 100), 1 / 32),
                                                       (24, (375, 500), 1 / 16), (4, (40, 40), 1 / 16),
                                                       (63, (500, 500), 1 / 8)])
    def test_none_infers_the_scale_the_given_one_would_use(self, feature, image, scale):
        torch.manual_seed(0)
        inferred = RFCNHead(16, 2, pool_size=3, spatial_scale=None, mid_channels=8)
        given = RFCNHead(16, 2, pool_size=3, spatial_scale=scale, mid_channels=8)
        given.load_state_dict(inferred.state_dict())
        w = feature if image[0] == image[1] else math.ceil(feature * image[1] / image[0])
        features, proposals = torch.randn(1, 16, feature, w), [torch.tensor([[4.0, 4, 30, 36]])]
        torch.testing.assert_close(inferred(features, proposals, [image])["det_logits"],
                                   given(features, proposals, [image])["det_logits"])

    def test_none_needs_image_sizes(self):
        head = RFCNHead(16, 2, pool_size=3, spatial_scale=None, mid_channels=8)
        with pytest.raises(ValueError, match="spatial_scale=None infers the scale .* pass image_sizes"):
            head(torch.randn(1, 16, 8, 8), [torch.tensor([[0.0, 0, 64, 64]])])


class TestConstruction:
    @pytest.mark.parametrize("kwargs, error, message", [
        (dict(num_classes=0), ValueError, "num_classes must be >= 1, got 0"),
        (dict(num_classes=2.5), TypeError, "num_classes must be an int"),
        (dict(spatial_scale=float("nan")), ValueError, "spatial_scale must be a finite number > 0"),
        (dict(spatial_scale=0), ValueError, "spatial_scale must be a finite number > 0, got 0"),
        (dict(spatial_scale=float("inf")), ValueError, "spatial_scale must be a finite number"),
        (dict(pool_size=0), ValueError, "pool_size must be >= 1"),
        (dict(mid_channels=0), ValueError, "mid_channels must be >= 1"),
        (dict(in_channels=-1), ValueError, "in_channels must be >= 1"),
        (dict(sampling_ratio=1.5), TypeError, "sampling_ratio must be an int"),
    ])
    @pytest.mark.parametrize("which", [RFCNHead, DecoupledHead])
    def test_bad_arguments_fail_at_construction(self, which, kwargs, error, message):
        args = dict(in_channels=16, num_classes=3, pool_size=3, spatial_scale=1 / 8, mid_channels=8)
        with pytest.raises(error, match=message):
            which(**{**args, **kwargs})

    @pytest.mark.parametrize("kwargs, error, message", [
        (dict(fine_channels=0), ValueError, "fine_channels must be >= 1"),
        (dict(class_loss_weight=float("nan")), ValueError, "class_loss_weight must be a finite number >= 0"),
        (dict(nms_groups="per-class"), ValueError, r"nms_groups must be one of \('class', 'superclass', 'agnostic'\)"),
        (dict(nms_groups=torch.zeros(2, dtype=torch.int64)), ValueError, r"nms_groups must be \[C\] = \[3\] ids"),
        (dict(nms_groups=torch.tensor([0.0, 1, 2])), TypeError, "nms_groups must hold integer ids"),
        (dict(superclass_of=[0, -1, 0]), ValueError, "superclass_of must be non-negative ids, got -1"),
    ])
    def test_bad_decoupled_arguments(self, kwargs, error, message):
        with pytest.raises(error, match=message):
            DecoupledHead(16, 3, **{**dict(pool_size=3, spatial_scale=1 / 8, mid_channels=8), **kwargs})

    def test_numpy_scalars_are_numbers(self):
        head = DecoupledHead(np.int64(16), np.int32(3), np.array([0, 1, 1]), pool_size=np.int64(3),
                             spatial_scale=np.float32(0.125), mid_channels=np.int64(8), fine_channels=np.int16(8),
                             class_loss_weight=np.float64(0.05))
        assert type(head.num_classes) is int and type(head.spatial_scale) is float and head.num_superclasses == 2
        out = head(torch.randn(1, 16, 20, 20), [torch.tensor([[0.0, 0, 40, 40]])])
        assert out["det_logits"].shape == (1, 3)

    def test_labels_outside_1_to_num_classes_name_the_convention(self):
        head = _heads(c=2)["rfcn"]
        out = head(torch.randn(1, 16, 20, 20), [torch.tensor([[0.0, 0, 40, 40]])])
        with pytest.raises(ValueError, match=r"holds \[3\] outside \[1, num_classes=2\]: object labels are 1..C and 0 "
                                             r"is the background, .* without it .* num_classes >= 3"):
            head.loss(out, [{"boxes": torch.tensor([[0.0, 0, 40, 40]]), "labels": torch.tensor([3])}])


class TestDiscoverSuperclasses:
    @pytest.mark.parametrize("iters", [0, 1, 100])
    def test_always_k_clusters_even_with_duplicate_features(self, iters):
        g = torch.Generator().manual_seed(0)
        for trial in range(60):
            c = int(torch.randint(1, 12, (1,), generator=g))
            k = int(torch.randint(1, c + 1, (1,), generator=g))
            x = torch.randint(0, 3, (c, 2), generator=g).double()  # many duplicate rows
            assert discover_superclasses(x, k, seed=trial, iters=iters).unique().numel() == k

    def test_zero_iterations_is_the_seeding_not_one_cluster(self):
        feats = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.0, 10.1], [0.0, 0.1]])
        assert discover_superclasses(feats, 2, iters=0).tolist() == [0, 0, 1, 1, 0]
        assert discover_superclasses(torch.zeros(4, 3), 4).tolist() == [0, 1, 2, 3]

    def test_arguments(self):
        feats = torch.randn(5, 3)
        assert discover_superclasses(feats, np.int64(2)).unique().numel() == 2
        with pytest.raises(ValueError, match="iters must be >= 0, got -1"):
            discover_superclasses(feats, 2, iters=-1)
        with pytest.raises(ValueError, match="n_init must be >= 1"):
            discover_superclasses(feats, 2, n_init=0)
        with pytest.raises(TypeError, match="k must be an int"):
            discover_superclasses(feats, 2.0)
        big = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1e4, 1e4]], dtype=torch.float64) * 1e150  # squares overflow
        assert discover_superclasses(big, 2).tolist() == [0, 0, 1]
