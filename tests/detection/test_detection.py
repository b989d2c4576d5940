"""scalekit.detection: scalekit's blocks inside torchvision detectors.

Every test asserts an effect: the size that reaches the backbone, the label an
anchor or a proposal gets, the gradient that must be zero, the proposals a
head sees, the function a deformable backbone computes."""

import json

import pytest
import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import concat_box_prediction_layers

from scalekit.chips import ChipDataset, ChipGenerator, collate_chips
from scalekit.datasets import CocoDetection
from scalekit.datasets.synthetic import make_synthetic_coco
from scalekit.evaluation import coco_evaluate, to_coco_results
from scalekit.detection import (
    TorchvisionRoIHeads,
    deformable_resnet,
    faster_rcnn_with_head,
    honour_ignore_boxes,
    keep_input_size,
)
from scalekit.heads import DecoupledHead, RFCNHead
from scalekit.scale import AreaRange, Pyramid, ScaleSpec


def _mobilenet_320(**kwargs):
    torch.manual_seed(0)
    return torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, **kwargs)


def _backbone_sizes(model):
    sizes = []
    model.backbone.register_forward_pre_hook(lambda m, x: sizes.append(tuple(x[0].shape)))
    return sizes


def _tiny_backbone(channels=16, stride=8):
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, channels, 3, stride=stride, padding=1), torch.nn.ReLU(),
                                   torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU())
    backbone.out_channels = channels
    return backbone


def _tiny_faster_rcnn(**kwargs):
    from torchvision.models.detection import FasterRCNN

    kwargs.setdefault("rpn_anchor_generator", AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)))
    return FasterRCNN(_tiny_backbone(), num_classes=3, min_size=128, max_size=128, **kwargs)


LEVELS = ((ScaleSpec.shorter_side(640, 1000), AreaRange(0, 60)), (ScaleSpec.shorter_side(320, 480), AreaRange(40, 200)),
          (ScaleSpec.shorter_side(160, 240), AreaRange(120)))


class TestPyramidResolution:
    def test_each_level_reaches_the_backbone_at_its_size(self):
        model = _mobilenet_320(box_score_thresh=0.0).eval()
        sizes = _backbone_sizes(model)
        Pyramid(LEVELS).detect(model, torch.rand(3, 120, 160))
        # 640x853, 320x427, 160x213, padded to multiples of 32 — not 320x427 three times
        assert sizes == [(1, 3, 640, 864), (1, 3, 320, 448), (1, 3, 160, 224)]
        assert model.transform.resize_inputs  # the model resizes again outside the pyramid

    def test_a_two_line_adapter_is_resized_by_torchvision(self):
        """The documented pitfall: a plain callable is resized to min_size at every level."""
        model = _mobilenet_320(box_score_thresh=0.0).eval()
        sizes = _backbone_sizes(model)

        def adapter(image):
            with torch.no_grad():
                return model([image])[0]  # a torchvision dict is accepted as it is

        Pyramid(LEVELS).detect(adapter, torch.rand(3, 120, 160))
        assert sizes == [(1, 3, 320, 448)] * 3

    def test_images_of_one_level_run_as_one_batch(self):
        model = _mobilenet_320().eval()
        sizes = _backbone_sizes(model)
        out = Pyramid(LEVELS[:2]).detect(model, [torch.rand(3, 120, 160), torch.rand(3, 120, 160)])
        assert sizes == [(2, 3, 640, 864), (2, 3, 320, 448)] and len(out) == 2

    def test_boxes_come_back_in_original_pixels(self):
        model = _mobilenet_320().eval()
        seen = []

        def fake_roi_heads(features, proposals, image_shapes, targets=None):
            seen.append(image_shapes[0])
            h, w = image_shapes[0]
            box = torch.tensor([[w * 0.25, h * 0.25, w * 0.5, h * 0.5]])  # a quarter of whatever it is given
            return [{"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}], {}

        model.roi_heads.forward = fake_roi_heads
        levels = ((ScaleSpec.shorter_side(480, 800), AreaRange()),)
        dets = Pyramid(levels).detect(model, torch.rand(3, 120, 160))
        assert seen == [(480, 640)]
        torch.testing.assert_close(dets["boxes"], torch.tensor([[40.0, 30.0, 80.0, 60.0]]))

    def test_training_mode_and_bad_outputs_are_clear_errors(self):
        with pytest.raises(RuntimeError, match="model.eval()"):
            Pyramid(LEVELS).detect(_mobilenet_320().train(), torch.rand(3, 60, 80))

        def nan_detector(image):
            return torch.tensor([[0.0, 0, 5, float("nan")]]), torch.tensor([0.5]), torch.tensor([1])

        with pytest.raises(ValueError, match="non-finite"):
            Pyramid(LEVELS).detect(nan_detector, torch.rand(3, 60, 80))
        with pytest.raises(TypeError, match="dict without"):
            Pyramid(LEVELS).detect(lambda image: {"boxes": torch.zeros(0, 4)}, torch.rand(3, 60, 80))
        with pytest.raises(TypeError, match=r"must return \(boxes"):
            Pyramid(LEVELS).detect(lambda image: torch.zeros(0, 4), torch.rand(3, 60, 80))


class TestKeepInputSize:
    def test_chips_reach_the_backbone_at_512_in_training_and_inference(self):
        model = keep_input_size(_mobilenet_320())
        sizes = _backbone_sizes(model)
        target = {"boxes": torch.tensor([[10.0, 10, 200, 200]]), "labels": torch.tensor([1])}
        model([torch.rand(3, 512, 512)], [target])
        model.eval()([torch.rand(3, 512, 512)])
        assert sizes == [(1, 3, 512, 512)] * 2
        keep_input_size(model, False)([torch.rand(3, 512, 512)])
        assert sizes[-1] == (1, 3, 320, 320)

    def test_the_transform_resizes_ignore_boxes_with_the_boxes(self):
        model = honour_ignore_boxes(_mobilenet_320())  # min_size 320: a 160x200 image doubles
        boxes = torch.tensor([[10.0, 20, 30, 40]])
        _, targets = model.transform([torch.rand(3, 160, 200)], [{"boxes": boxes, "labels": torch.tensor([1]),
                                                                  "ignore_boxes": boxes + 50}])
        torch.testing.assert_close(targets[0]["boxes"], boxes * 2)
        torch.testing.assert_close(targets[0]["ignore_boxes"], (boxes + 50) * 2)


class TestIgnoreAwareRPN:
    def _setup(self):
        model = honour_ignore_boxes(_tiny_faster_rcnn(rpn_batch_size_per_image=100_000))
        keep_input_size(model)
        image = torch.rand(3, 128, 128)
        gt = torch.tensor([[16.0, 16, 48, 48]])
        ignore = torch.tensor([[64.0, 64, 112, 112], [18.0, 18, 46, 46]])  # one alone, one over the ground truth
        return model, image, {"boxes": gt, "labels": torch.tensor([1]), "ignore_boxes": ignore}

    def test_anchors_near_ignore_boxes_are_ignored_overriding_positives(self):
        model, image, target = self._setup()
        images, targets = model.transform([image], [target])
        features = model.backbone(images.tensors)
        anchors = model.rpn.anchor_generator(images, [features])
        labels = model.rpn.assign_targets_to_anchors(anchors, targets)[0][0]
        plain = type(model.rpn).__mro__[2].assign_targets_to_anchors(model.rpn, anchors, targets)[0][0]
        iou = torchvision.ops.box_iou(anchors[0], target["ignore_boxes"]).max(1).values
        near = iou > 0.3
        assert near.sum() > 0 and (labels[near] == -1).all()
        assert torch.equal(labels[~near], plain[~near])  # everything else as torchvision labels it
        assert ((plain == 1) & near).any()  # some were positives: the ignore box overrides them

    def test_objectness_gradient_of_ignored_anchors_is_zero(self):
        model, image, target = self._setup()
        captured = []

        def keep_logits(module, inputs, outputs):
            for t in outputs[0]:
                t.retain_grad()
            captured.append(outputs)

        model.rpn.head.register_forward_hook(keep_logits)
        grads = []
        for t in ({k: v for k, v in target.items() if k != "ignore_boxes"}, target):
            captured.clear()
            model.zero_grad()
            model([image], [t])["loss_objectness"].backward()
            objectness, deltas = captured[0]
            flat, _ = concat_box_prediction_layers([o.grad for o in objectness], [torch.zeros_like(d) for d in deltas])
            grads.append(flat.flatten())
        images, targets = model.transform([image], [target])
        anchors = model.rpn.anchor_generator(images, [model.backbone(images.tensors)])[0]
        near = torchvision.ops.box_iou(anchors, target["ignore_boxes"]).max(1).values > 0.3
        assert (grads[0][near] != 0).sum() > 0  # without the ignore boxes they were trained
        assert (grads[1][near] == 0).all()  # with them, not at all
        assert (grads[1][~near] != 0).sum() > 0


class TestIgnoreAwareRoIHeads:
    def test_proposals_on_ignore_boxes_are_neither_foreground_nor_background(self):
        model = honour_ignore_boxes(_tiny_faster_rcnn(box_batch_size_per_image=100_000))
        ignore = torch.tensor([[60.0, 60, 100, 100]])
        proposals = [torch.tensor([[61.0, 61, 100, 100], [0, 0, 10, 10], [18.0, 18, 46, 46]])]
        target = {"boxes": torch.tensor([[16.0, 16, 48, 48]]), "labels": torch.tensor([2])}
        sampled = {}
        for name, t in (("plain", target), ("ignore", dict(target, ignore_boxes=ignore))):
            p, _, labels, _ = model.roi_heads.select_training_samples([q.clone() for q in proposals], [t])
            sampled[name] = {tuple(b.tolist()): int(lab) for b, lab in zip(p[0], labels[0])}
        assert sampled["plain"][(61.0, 61, 100, 100)] == 0  # background without the ignore box
        assert (61.0, 61, 100, 100) not in sampled["ignore"]  # not sampled at all with it
        assert sampled["ignore"][(0.0, 0, 10, 10)] == 0 and sampled["ignore"][(18.0, 18, 46, 46)] == 2

    def test_a_background_only_chip_with_ignore_boxes(self):
        model = honour_ignore_boxes(_tiny_faster_rcnn(box_batch_size_per_image=100_000))
        target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                  "ignore_boxes": torch.tensor([[60.0, 60, 100, 100]])}
        p, _, labels, _ = model.roi_heads.select_training_samples([torch.tensor([[61.0, 61, 100, 100], [0, 0, 9, 9]])],
                                                                  [target])
        assert p[0].tolist() == [[0.0, 0, 9, 9]] and labels[0].tolist() == [0]

    def test_bad_ignore_boxes_and_models(self):
        model = honour_ignore_boxes(_tiny_faster_rcnn())
        with pytest.raises(ValueError, match=r"ignore_boxes'\] must be an \[I, 4\]"):
            model([torch.rand(3, 128, 128)], [{"boxes": torch.tensor([[1.0, 1, 9, 9]]), "labels": torch.tensor([1]),
                                               "ignore_boxes": torch.zeros(4)}])
        with pytest.raises(TypeError, match="GeneralizedRCNN"):
            honour_ignore_boxes(torchvision.models.resnet18())
        with pytest.raises(ValueError, match="rpn_ignore_iou"):
            honour_ignore_boxes(_tiny_faster_rcnn(), rpn_ignore_iou=1.5)


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    root = tmp_path_factory.mktemp("chips")
    images, ann = make_synthetic_coco(str(root), num_images=3, seed=1)
    return ChipDataset(CocoDetection(images, ann), ChipGenerator())


def test_mobilenet_fpn_trains_on_chip_batches_with_ignore_boxes(chips):
    loader = DataLoader(chips, batch_size=2, shuffle=False, collate_fn=ChipDataset.collate_fn)
    images, targets = next(iter(loader))
    assert any(len(t["ignore_boxes"]) for t in targets)  # the batch really has ignore boxes
    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=4, rpn_post_nms_top_n_train=200, box_batch_size_per_image=64)
    honour_ignore_boxes(keep_input_size(model)).train()
    sizes = _backbone_sizes(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(4):
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and min(losses[-2:]) < losses[0]
    assert set(sizes) == {(2, 3, 512, 512)}


def test_default_collate_cannot_batch_chips_and_collate_chips_can(chips):
    with pytest.raises((TypeError, RuntimeError)):  # boxes of different lengths cannot be stacked
        next(iter(DataLoader(chips, batch_size=2)))
    images, targets = collate_chips([chips[0], chips[1]])
    assert [im.shape for im in images] == [(3, 512, 512)] * 2 and {"boxes", "labels", "ignore_boxes"} <= set(targets[0])


class TestHeadsAsRoIHeads:
    def _model(self, head_kind, deformable=False):
        head = (RFCNHead(16, 3, pool_size=3, spatial_scale=1 / 8, mid_channels=16, deformable=deformable)
                if head_kind == "rfcn" else
                DecoupledHead(16, 3, torch.tensor([0, 0, 1]), pool_size=3, spatial_scale=1 / 8, mid_channels=16,
                              fine_channels=16, deformable=deformable, class_loss_weight=1.0))
        return faster_rcnn_with_head(_tiny_backbone(), head, min_size=128, max_size=128,
                                     rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
                                     rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=48,
                                     rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=48)

    @pytest.mark.parametrize("head_kind, deformable", [("rfcn", False), ("decoupled", False), ("decoupled", True),
                                                       ("rfcn", True)])
    def test_trains_and_returns_torchvision_detections(self, head_kind, deformable):
        model = self._model(head_kind, deformable)
        g = torch.Generator().manual_seed(0)
        images = [torch.rand(3, 64, 96, generator=g) for _ in range(2)]  # resized x4/3 by the transform (max_size 128)
        targets = [{"boxes": torch.tensor([[5.0, 5, 40, 30]]), "labels": torch.tensor([2])},
                   {"boxes": torch.tensor([[30.0, 10, 90, 60], [2, 2, 20, 20]]), "labels": torch.tensor([1, 3])}]
        seen = []
        model.roi_heads.head.register_forward_hook(lambda m, inputs, out: seen.append(inputs[1]))
        opt = torch.optim.Adam(model.parameters(), lr=5e-3)
        losses = []
        for _ in range(10):
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert all(torch.isfinite(torch.tensor(losses))) and max(losses[-3:]) < 0.8 * losses[0], losses
        # ground truth, resized with the image, appended to the proposals the head sees
        ratio = torch.tensor([128 / 96, 85 / 64, 128 / 96, 85 / 64])  # the 64x96 images became 85x128
        torch.testing.assert_close(seen[0][1][-2:], targets[1]["boxes"] * ratio)
        model.eval()
        dets = model(images)
        assert len(dets) == 2 and set(dets[0]) == {"boxes", "scores", "labels"}
        for d in dets:  # in the coordinates of the images given, not the resized ones
            assert (d["boxes"][:, 2] <= 96 + 1e-4).all() and (d["boxes"][:, 3] <= 64 + 1e-4).all()
            assert d["labels"].dtype == torch.int64 and ((d["labels"] >= 1) & (d["labels"] <= 3)).all()

    def test_several_feature_maps_need_a_key(self):
        roi_heads = TorchvisionRoIHeads(RFCNHead(8, 2, pool_size=3, spatial_scale=1 / 8, mid_channels=8)).eval()
        features = {"0": torch.randn(1, 8, 8, 8), "1": torch.randn(1, 8, 4, 4)}
        with pytest.raises(ValueError, match="pass feature=<key>"):
            roi_heads(features, [torch.tensor([[0.0, 0, 30, 30]])], [(64, 64)])
        roi_heads.feature = "0"
        assert len(roi_heads(features, [torch.tensor([[0.0, 0, 30, 30]])], [(64, 64)])[0]) == 1
        with pytest.raises(TypeError, match="loss"):
            TorchvisionRoIHeads(torch.nn.Identity())


class TestDeformableResNet:
    def test_same_function_at_initialisation_and_plain_weights_load(self):
        import copy

        torch.manual_seed(0)
        plain = torchvision.models.resnet50(weights=None).eval()
        deform = deformable_resnet(copy.deepcopy(plain)).eval()
        swapped = [n for n, m in deform.named_modules() if hasattr(m, "offset_conv")]
        assert swapped == ["layer4.0.conv2", "layer4.1.conv2", "layer4.2.conv2"]
        x = torch.rand(1, 3, 128, 128)
        torch.testing.assert_close(deform(x), plain(x), rtol=1e-4, atol=1e-4)  # the swap keeps the weights
        other = torchvision.models.resnet50(weights=None).eval()
        deform.load_state_dict(other.state_dict())  # a plain checkpoint loads, strictly
        torch.testing.assert_close(deform(x), other(x), rtol=1e-4, atol=1e-4)
        deform.train()
        deform(x).sum().backward()
        assert deform.layer4[0].conv2.offset_conv.weight.grad.abs().sum() > 0  # the offsets learn

    def test_inside_a_detection_backbone(self):
        backbone = torchvision.models.detection.backbone_utils.resnet_fpn_backbone(
            backbone_name="resnet18", weights=None, trainable_layers=5)
        deformable_resnet(backbone, ("layer3", "layer4"), modulated=True)
        assert sum(hasattr(m, "offset_conv") for m in backbone.modules()) == 8
        with pytest.raises(ValueError, match=r"stages \['layer9'\] not found"):
            deformable_resnet(torchvision.models.resnet18(), ("layer9",))


class TestContiguousLabels:
    def test_category_ids_map_to_1_to_c_and_back(self, tmp_path):
        images, ann = make_synthetic_coco(str(tmp_path), num_images=3, seed=2)
        coco = json.load(open(ann))
        remap = {c["id"]: new for c, new in zip(coco["categories"], (90, 7, 13))}  # COCO-like gaps
        for c in coco["categories"]:
            c["id"] = remap[c["id"]]
        for a in coco["annotations"]:
            a["category_id"] = remap[a["category_id"]]
        (tmp_path / "gaps.json").write_text(json.dumps(coco))
        ds = CocoDetection(images, str(tmp_path / "gaps.json"))
        assert ds.label_to_category == {1: 7, 2: 13, 3: 90} and ds.num_classes == 3
        predictions = {}
        for i in range(len(ds)):
            boxes, labels, _ = ds.annotations(i)
            original = [a["category_id"] for a in coco["annotations"] if a["image_id"] == ds.ids[i]]
            assert [ds.label_to_category[int(lab)] for lab in labels] == original
            assert labels.min() >= 1 and labels.max() <= 3
            predictions[ds.ids[i]] = {"boxes": boxes, "scores": torch.ones(len(boxes)), "labels": labels}
        # detections equal to the ground truth, mapped back, score AP 1 against the original file
        stats = coco_evaluate(to_coco_results(predictions, ds.label_to_category), str(tmp_path / "gaps.json"))
        assert stats["AP"] == pytest.approx(1.0)
        with pytest.raises(ValueError, match=r"labels \[4\] are not in label_to_category"):
            to_coco_results({1: {"boxes": [[0.0, 0, 1, 1]], "scores": [1.0], "labels": [4]}}, ds.label_to_category)

    def test_image_files_are_checked(self, tmp_path):
        from PIL import Image

        images, ann = make_synthetic_coco(str(tmp_path), num_images=2, seed=3)
        coco = json.load(open(ann))
        name = coco["images"][0]["file_name"]
        Image.new("RGB", (10, 20)).save(f"{images}/{name}")
        with pytest.raises(ValueError, match=r"is 20x10 \(HxW\) but the annotation file says"):
            CocoDetection(images, ann)[0]
        coco["images"][1]["file_name"] = "nowhere.jpg"
        (tmp_path / "missing.json").write_text(json.dumps(coco))
        with pytest.raises(FileNotFoundError, match=r"1 of 2 image files .* do not exist, e.g. \['nowhere.jpg'\]"):
            CocoDetection(images, str(tmp_path / "missing.json"))
        with pytest.raises(FileNotFoundError, match="no such file"):
            CocoDetection(images, str(tmp_path / "missing.json"), check_files=False)[1]


def test_chip_dataset_names_the_image_of_a_bad_box(tmp_path):
    class Boxes5:  # [N, 5] targets (score or label as a fifth column) must not be reinterpreted as [N*5/4, 4]
        def __len__(self):
            return 2

        def annotations(self, i):
            boxes = torch.tensor([[10.0, 10, 50, 50, 1], [20, 20, 60, 60, 2], [0, 0, 30, 30, 1], [5, 5, 9, 9, 3]])
            return (boxes[:, :4] if i == 0 else boxes), torch.ones(4, dtype=torch.int64), (100, 100)

    with pytest.raises(ValueError, match=r"dataset image 1: .*\[N, 4\]"):
        ChipDataset(Boxes5(), ChipGenerator())
