"""CocoDetection: malformed annotation files give a ValueError naming the entry
(issues 21 and 27), boxes equal pycocotools', and ``transforms`` moves boxes with
the pixels as torchvision's v2 transforms do."""

import contextlib
import io
import json

import pytest
import torch

from scalekit.datasets import CocoDetection
from scalekit.datasets.synthetic import make_synthetic_coco


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root, ann = make_synthetic_coco(str(tmp_path_factory.mktemp("coco")), num_images=3, seed=0,
                                    image_sizes=((120, 160),), max_size=60)
    coco = json.load(open(ann))
    # a crowd region on the first image, for ignore_boxes
    coco["annotations"].append({"id": 999, "image_id": coco["images"][0]["id"], "category_id": 1,
                                "bbox": [5, 6, 30, 20], "area": 600, "iscrowd": 1})
    with open(ann, "w") as f:
        json.dump(coco, f)
    return root, ann, coco


def _write(tmp_path, coco, text=None):
    path = tmp_path / "ann.json"
    path.write_text(text if text is not None else json.dumps(coco))
    return str(path)


def _variant(coco, change):
    coco = json.loads(json.dumps(coco))
    change(coco)
    return coco


class TestMalformedFiles:
    @pytest.mark.parametrize("bbox, literal", [
        ("[NaN, 1, 2, 3]", r"\[nan, 1, 2, 3\]"), ("[1, 1, Infinity, 3]", r"\[1, 1, inf, 3\]"),
        ("[1, -Infinity, 2, 3]", r"\[1, -inf, 2, 3\]")])
    def test_non_finite_boxes_name_the_annotation_and_image(self, data, tmp_path, bbox, literal):
        root, _, coco = data
        first = coco["annotations"][0]
        text = json.dumps(coco).replace(json.dumps(first["bbox"]), bbox, 1)  # JSON's NaN/Infinity literals
        image = next(i for i in coco["images"] if i["id"] == first["image_id"])
        with pytest.raises(ValueError, match=rf"annotation {first['id']} \(image {image['id']}, "
                                             rf"{image['file_name']}\) has a non-finite bbox {literal}"):
            CocoDetection(root, _write(tmp_path, coco, text))

    def test_a_shared_annotation_id_is_refused_although_pycocotools_keeps_one(self, data, tmp_path):
        from pycocotools.coco import COCO

        root, _, coco = data
        a, b = coco["annotations"][0], coco["annotations"][1]
        bad = _variant(coco, lambda c: c["annotations"][1].update(id=a["id"]))
        path = _write(tmp_path, bad)
        with contextlib.redirect_stdout(io.StringIO()):
            assert len(COCO(path).anns) == len(bad["annotations"]) - 1  # what pycocotools does: one is lost
        with pytest.raises(ValueError, match=rf"annotation id {a['id']} appears twice \(annotations\[0\] of image "
                                             rf"{a['image_id']} and annotations\[1\] of image {b['image_id']}\)"):
            CocoDetection(root, path)

    @pytest.mark.parametrize("change, match", [
        (lambda c: c["images"][0].pop("height"), r"images\[0\] \(id 1, 000001.jpg\) needs a positive whole "
                                                 r"'height', got nothing"),
        (lambda c: c["images"][0].update(width=0), "needs a positive whole 'width', got 0"),
        (lambda c: c["images"][0].update(width=12.5), "needs a positive whole 'width', got 12.5"),
        (lambda c: c["images"][0].pop("file_name"), "needs a 'file_name' string"),
        (lambda c: c["images"][1].update(id=c["images"][0]["id"]), r"image id 1 appears twice"),
        (lambda c: c["images"][0].pop("id"), r"images\[0\] needs an integer 'id'"),
        (lambda c: c["annotations"][0].update(image_id=12345), "image_id 12345, which is not among the file's images"),
        (lambda c: c["annotations"][0].update(image_id=[1]), r"image_id \[1\], which is not among"),
        (lambda c: c["annotations"][0].update(category_id=77), "category_id 77, which is not among"),
        (lambda c: c["annotations"][0].pop("id"), r"annotations\[0\] needs an integer 'id'"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), "malformed bbox"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, "3", 4]), "malformed bbox"),
        (lambda c: c["annotations"][0].update(bbox=[1, 2, 3, -4]), r"malformed bbox \[1, 2, 3, -4\]"),
        (lambda c: c["annotations"][0].update(iscrowd=2), "iscrowd 2, expected 0 or 1"),
        (lambda c: c["categories"].append(dict(c["categories"][0])), "category id 1 appears twice"),
        (lambda c: c.pop("images"), "'images' must be a list, got nothing"),
        (lambda c: c.update(annotations={}), "'annotations' must be a list, got dict"),
    ])
    def test_each_malformed_entry_is_a_value_error_that_names_it(self, data, tmp_path, change, match):
        root, _, coco = data
        with pytest.raises(ValueError, match=match):
            CocoDetection(root, _write(tmp_path, _variant(coco, change)))

    def test_files_that_are_not_coco_json(self, data, tmp_path):
        root = data[0]
        with pytest.raises(ValueError, match=r"not valid JSON: Expecting .*line 1 column"):
            CocoDetection(root, _write(tmp_path, None, '{"images": ['))
        with pytest.raises(ValueError, match="is a JSON object .* got a JSON list"):
            CocoDetection(root, _write(tmp_path, None, "[]"))
        (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
        with pytest.raises(ValueError, match="not UTF-8"):
            CocoDetection(root, str(tmp_path / "bin.json"))

    def test_a_file_without_annotations_is_a_dataset_of_empty_targets(self, data, tmp_path):
        root, _, coco = data
        ds = CocoDetection(root, _write(tmp_path, _variant(coco, lambda c: c.pop("annotations"))))
        assert ds.annotations(0)[0].shape == (0, 4) and ds.num_classes == len(coco["categories"])


def test_boxes_labels_and_crowds_equal_pycocotools(data):
    from pycocotools.coco import COCO

    root, ann, coco = data
    ds = CocoDetection(root, ann)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = COCO(ann)
    for i, image_id in enumerate(ds.ids):
        anns = ref.loadAnns(ref.getAnnIds(imgIds=[image_id]))
        boxes, labels, size = ds.annotations(i)
        expect = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns if not a["iscrowd"])]
        assert boxes.tolist() == expect
        assert [ds.label_to_category[int(x)] for x in labels] == [a["category_id"] for a in anns if not a["iscrowd"]]
        crowd = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns if a["iscrowd"])]
        assert ds.ignore_boxes(i).tolist() == crowd
        assert size == (ref.imgs[image_id]["height"], ref.imgs[image_id]["width"])


class TestTransforms:
    def test_a_torchvision_v2_flip_moves_boxes_and_ignore_boxes(self, data):
        from torchvision.transforms import v2

        root, ann, _ = data
        plain = CocoDetection(root, ann)
        flipped = CocoDetection(root, ann, transforms=v2.RandomHorizontalFlip(p=1.0))
        image, target = plain[0]
        f_image, f_target = flipped[0]
        w = image.shape[-1]
        torch.testing.assert_close(f_image, image.flip(-1))
        for key in ("boxes", "ignore_boxes"):
            b = target[key]
            assert len(b) > 0
            mirrored = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)
            torch.testing.assert_close(f_target[key], mirrored)
            assert type(f_target[key]) is torch.Tensor and f_target[key].dtype == torch.float32
        assert type(f_image) is torch.Tensor
        assert f_target["labels"].tolist() == target["labels"].tolist() and f_target["image_id"] == target["image_id"]

    def test_a_resize_and_sanitize_keep_boxes_and_labels_together(self, data):
        from torchvision.transforms import v2

        root, ann, _ = data
        image, target = CocoDetection(root, ann)[0]
        t = v2.Compose([v2.Resize((60, 80)), v2.SanitizeBoundingBoxes(min_size=1)])
        r_image, r_target = CocoDetection(root, ann, transforms=t)[0]
        assert r_image.shape[-2:] == (60, 80)
        keep = ((target["boxes"][:, 2:] - target["boxes"][:, :2]) / 2 >= 1).all(1)
        torch.testing.assert_close(r_target["boxes"], target["boxes"][keep] / 2, atol=1e-4, rtol=0)
        assert r_target["labels"].tolist() == target["labels"][keep].tolist()

    def test_a_transform_that_breaks_the_target_is_named(self, data):
        root, ann, _ = data

        def drops_boxes(image, target):
            return image, {**target, "boxes": target["boxes"][:0]}

        with pytest.raises(ValueError, match=r"after transforms there are 0 boxes but \d+ labels"):
            CocoDetection(root, ann, transforms=drops_boxes)[0]
        with pytest.raises(TypeError, match=r"transforms must return \(image, target dict\)"):
            CocoDetection(root, ann, transforms=lambda image, target: image)[0]
        with pytest.raises(TypeError, match="transforms must be a callable"):
            CocoDetection(root, ann, transforms="flip")
