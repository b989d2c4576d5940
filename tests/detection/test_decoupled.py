"""R-FCN-3000 at the detector level (objectness detections, add_class) and what
faster_rcnn_with_head checks at construction: anchors per feature map (FPN),
the head's spatial scale, labels against num_classes."""

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from scalekit.detection import (
    add_class,
    faster_rcnn_with_head,
    image_features,
    objectness_detections,
    proposal_detections,
)
from scalekit.heads import DecoupledHead, RFCNHead


def _backbone(channels=16, stride=8):
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, channels, 3, stride=stride, padding=1), torch.nn.ReLU(),
                                   torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU())
    backbone.out_channels = channels
    return backbone


def _model(head_kind="decoupled", **head_kwargs):
    torch.manual_seed(0)
    kwargs = dict(pool_size=3, spatial_scale=1 / 8, mid_channels=16, **head_kwargs)
    head = (DecoupledHead(16, 4, torch.tensor([0, 0, 1, 1]), fine_channels=16, **kwargs) if head_kind == "decoupled"
            else RFCNHead(16, 4, **kwargs))
    return faster_rcnn_with_head(_backbone(), head, min_size=128, max_size=128,
                                 rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
                                 rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=40)


def _rpn_scores_by_torchvision(model, images):
    """The RPN's proposals and scores computed step by step with torchvision's own pieces (the
    peer): head, anchors, box decoding and ``filter_proposals``, as its ``forward`` runs them."""
    from torchvision.models.detection.rpn import concat_box_prediction_layers

    model.eval()
    batch, _ = model.transform(images)
    feats = [model.backbone(batch.tensors)]
    rpn = model.rpn
    logits, deltas = rpn.head(feats)
    anchors = rpn.anchor_generator(batch, feats)
    per_level = [o[0].numel() for o in logits]
    logits, deltas = concat_box_prediction_layers(logits, deltas)
    proposals = rpn.box_coder.decode(deltas, anchors).view(len(anchors), -1, 4)
    return rpn.filter_proposals(proposals, logits, batch.image_sizes, per_level)


class TestProposalDetections:
    """Thesis Table 4.5: the RPN's score as objectness, times the fine-grained p(c)."""

    def _run(self, box_regression):
        model = _model().train()
        images = [torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(i)) for i in range(2)]
        seen = []
        model.roi_heads.head.register_forward_hook(lambda m, i, out: seen.append(out))
        dets = proposal_detections(model, images, box_regression=box_regression, score_threshold=0.0)
        assert model.training and "filter_proposals" not in vars(model.rpn)  # mode and the RPN restored
        boxes, scores = _rpn_scores_by_torchvision(model, images)
        return model, dets, boxes, scores, seen[0]

    def test_without_regression_each_box_is_a_proposal_scored_rpn_times_class(self):
        _, dets, boxes, scores, out = self._run(False)
        p_class = out["class_logits"].softmax(1).split([len(b) for b in boxes])
        for d, b, s, p in zip(dets, boxes, scores, p_class):
            assert len(d["boxes"]) > 0
            for box, score, label in zip(d["boxes"], d["scores"], d["labels"]):
                j = (b == box).all(1).nonzero().flatten()  # images are not resized: proposals are input pixels
                assert len(j) >= 1, "a detection's box is not one of the RPN's proposals"
                assert torch.isclose(score, (s[j] * p[j, label - 1]).max(), rtol=1e-5)

    def test_with_regression_boxes_are_the_heads_decoded_boxes_and_differ_from_proposals(self):
        model, dets, boxes, _, out = self._run(True)
        decoded, index = model.roi_heads.head.boxes(out, [(128, 128)] * 2)
        moved = 0
        for i, (d, b) in enumerate(zip(dets, boxes)):
            mine = decoded[index == i]
            for box in d["boxes"]:
                assert torch.isclose(mine, box, atol=1e-4).all(1).any()
                moved += int(not (b == box).all(1).any())
        assert moved > 0  # regression changed some boxes (the head's box branch is not the identity)

    def test_the_super_class_branch_is_not_used(self):
        model = _model().eval()
        images = [torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))]
        before_own, before_rpn = model(images)[0], proposal_detections(model, images)[0]
        with torch.no_grad():
            model.roi_heads.head.super_maps.weight.normal_(std=1.0)  # a different p(super-class)
        after_own, after_rpn = model(images)[0], proposal_detections(model, images)[0]
        assert not torch.equal(before_own["scores"], after_own["scores"])  # the detector's own scores move
        for k in ("boxes", "scores", "labels"):
            assert torch.equal(before_rpn[k], after_rpn[k])  # the RPN-objectness detections do not

    def test_the_rpn_is_restored_after_an_error_and_its_own_override_kept(self):
        model = _model()
        calls = []
        original = model.rpn.filter_proposals

        def own(*args, **kwargs):
            calls.append(1)
            return original(*args, **kwargs)

        model.rpn.filter_proposals = own
        proposal_detections(model, [torch.rand(3, 128, 128)])
        assert model.rpn.filter_proposals is own and calls == [1]
        model.roi_heads.head.register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            proposal_detections(model, [torch.rand(3, 128, 128)])
        assert model.rpn.filter_proposals is own and model.training

    def test_needs_a_decoupled_head(self):
        with pytest.raises(TypeError, match="DecoupledHead"):
            proposal_detections(_model("rfcn"), [torch.rand(3, 64, 64)])

    def test_objectness_of_the_wrong_length_is_named(self):
        head = _model().roi_heads.head
        out = head(torch.rand(1, 16, 16, 16), [torch.tensor([[0.0, 0, 30, 30], [5, 5, 60, 60]])], [(128, 128)])
        with pytest.raises(ValueError, match=r"objectness must be a \[2\] tensor"):
            head.postprocess(out, [(128, 128)], objectness=torch.rand(3))


class TestObjectnessDetections:
    @pytest.mark.parametrize("head_kind", ["decoupled", "rfcn"])
    def test_the_detectors_own_proposals_scored_by_objectness_in_input_pixels(self, head_kind):
        model = _model(head_kind).train()
        images = [torch.rand(3, 96, 64, generator=torch.Generator().manual_seed(i)) for i in range(2)]
        seen = {}
        model.rpn.register_forward_hook(lambda m, i, out: seen.setdefault("proposals", []).append(out[0]))
        model.roi_heads.head.register_forward_hook(lambda m, i, out: seen.setdefault("outputs", []).append(out))
        dets = objectness_detections(model, images)
        assert model.training  # the caller's mode is restored
        model.eval()(images)  # the detector's own inference: the same proposals
        for a, b in zip(*seen["proposals"]):
            assert torch.equal(a, b)
        out = seen["outputs"][0]
        objectness = 1 - out["det_logits"].softmax(1)[:, 0]
        per_image = objectness.split([len(p) for p in seen["proposals"][0]])
        for d, obj in zip(dets, per_image):
            assert d["labels"].tolist() == [1] * len(d["labels"]) and len(d["labels"]) > 0
            assert d["scores"][0] == obj.max()  # the best RoI's objectness, whatever its class
            assert all(any(torch.isclose(s, obj).tolist()) for s in d["scores"])
            assert (d["boxes"][:, 2] <= 64 + 1e-4).all() and (d["boxes"][:, 3] <= 96 + 1e-4).all()  # input pixels

    def test_a_model_without_a_scalekit_head_is_named(self):
        import torchvision

        model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None,
                                                                             num_classes=3)
        with pytest.raises(TypeError, match="faster_rcnn_with_head"):
            objectness_detections(model, [torch.rand(3, 64, 64)])
        with pytest.raises(TypeError, match=r"images\[0\] must be a float image .* got torch.uint8"):
            objectness_detections(_model(), [torch.zeros(3, 64, 64, dtype=torch.uint8)])


class TestAddClass:
    def test_the_new_class_is_detected_from_classification_images_alone(self):
        model = _model().train()
        g = torch.Generator().manual_seed(0)
        red = torch.zeros(6, 3, 40, 40)
        red[:, 0] = 0.8 + 0.2 * torch.rand(6, 40, 40, generator=g)
        others = torch.rand(24, 3, 40, 40, generator=g)
        label = add_class(model, red, list(others))
        head = model.roi_heads.head
        assert label == 5 and head.num_classes == 5 and len(head.nms_group_of) == 5 and model.training
        logits = lambda f: f @ head.fine_cls.weight.flatten(1).T + head.fine_cls.bias  # noqa: E731
        assert (logits(image_features(model, red)).argmax(1) == 4).all()
        new_red = torch.zeros(3, 3, 40, 40)
        new_red[:, 0] = 0.9
        assert (logits(image_features(model, new_red)).argmax(1) == 4).all()  # unseen images of the class
        assert model.eval()([torch.rand(3, 128, 128)])[0]["labels"].max() <= 5

    def test_negative_features_computed_once_give_the_same_class(self):
        g = torch.Generator().manual_seed(1)
        pos, neg = torch.rand(3, 3, 40, 40, generator=g), torch.rand(8, 3, 40, 40, generator=g)
        a, b = _model(), _model()
        add_class(a, pos, neg, steps=20)
        add_class(b, pos, negative_features=image_features(b, neg), steps=20)
        torch.testing.assert_close(a.roi_heads.head.fine_cls.weight, b.roi_heads.head.fine_cls.weight)
        with pytest.raises(ValueError, match="exactly one of negative_images and negative_features"):
            add_class(a, pos, neg, negative_features=image_features(a, neg))

    def test_features_are_those_of_the_head_on_normalised_images(self):
        model = _model().eval()
        x = torch.rand(2, 3, 40, 48)
        expected = model.roi_heads.head.image_features(model.backbone(model.transform.normalize(x)))
        torch.testing.assert_close(image_features(model, x), expected)
        with pytest.raises(TypeError, match="add_class needs a DecoupledHead"):
            add_class(_model("rfcn"), x, x)


class TestFasterRCNNWithHead:
    def test_fpn_backbone_gets_anchors_per_map_and_trains(self):
        backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)
        head = DecoupledHead(256, 3, pool_size=3, spatial_scale=None, mid_channels=16, fine_channels=16)
        model = faster_rcnn_with_head(backbone, head, feature="0", min_size=128, max_size=128,
                                      rpn_post_nms_top_n_train=50, rpn_post_nms_top_n_test=50)
        assert model.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))
        target = {"boxes": torch.tensor([[10.0, 20, 70, 90]]), "labels": torch.tensor([3])}
        losses = model([torch.rand(3, 128, 128)], [target])
        assert set(losses) >= {"loss_det", "loss_objectness"} and all(torch.isfinite(v) for v in losses.values())
        assert len(model.eval()([torch.rand(3, 128, 128)])) == 1

    def test_fpn_errors_say_what_to_pass(self):
        backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=0)
        head = RFCNHead(256, 3, pool_size=3, spatial_scale=1 / 16, mid_channels=16)
        with pytest.raises(ValueError, match=r"gives 5 feature maps \['0', '1', '2', '3', 'pool'\]: pass feature="):
            faster_rcnn_with_head(backbone, head)
        with pytest.raises(ValueError, match=r"rpn_anchor_generator has 1 entries of sizes, but the backbone gives 5 "
                                             r"feature maps .* one entry per map"):
            faster_rcnn_with_head(backbone, RFCNHead(256, 3, spatial_scale=1 / 4), feature="0",
                                  rpn_anchor_generator=AnchorGenerator(((32, 64),), ((1.0,),)))
        # map '0' of a ResNet FPN is at 1/4, not the 1/16 of a ResNet's conv4: said at construction
        with pytest.raises(ValueError, match=r"spatial_scale=0.0625 \(1/16\) does not fit .* pass spatial_scale=1/4"):
            faster_rcnn_with_head(backbone, head, feature="0")

    def test_wrong_spatial_scale_fails_at_construction_and_none_infers(self):
        head = DecoupledHead(16, 3, pool_size=3, spatial_scale=1 / 16, mid_channels=16, fine_channels=16)
        with pytest.raises(ValueError, match=r"pass spatial_scale=1/8"):
            faster_rcnn_with_head(_backbone(stride=8), head)
        head = DecoupledHead(16, 3, pool_size=3, spatial_scale=None, mid_channels=16, fine_channels=16)
        model = faster_rcnn_with_head(_backbone(stride=8), head, min_size=128, max_size=128)
        assert model.rpn.anchor_generator.sizes == ((32, 64, 128, 256, 512),)
        assert len(objectness_detections(model, [torch.rand(3, 100, 128)])) == 1

    def test_labels_beyond_num_classes_fail_at_the_first_batch_naming_the_convention(self):
        model = _model()
        target = {"boxes": torch.tensor([[10.0, 20, 70, 90]]), "labels": torch.tensor([5])}  # 4 classes
        with pytest.raises(ValueError, match=r"holds \[5\] outside \[1, num_classes=4\]: .*0 is the background"):
            model([torch.rand(3, 128, 128)], [target])
