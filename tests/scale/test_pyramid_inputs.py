"""Pyramid's inputs and arguments: what a new user gives it (uint8 tensors, PIL
images, file paths, numpy numbers) and what a careless one does (negative
counts, NaN settings, a level far too large) — issues 21 and 27."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from scalekit.scale import AreaRange, Pyramid, ScaleSpec, resize_image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ONE_LEVEL = ((ScaleSpec.fixed(1.0), AreaRange()),)


class Recorder:
    """A detector that records what it is given and finds two fixed boxes."""

    def __init__(self):
        self.images = []

    def __call__(self, image):
        self.images.append(image)
        return (torch.tensor([[5.0, 5, 25, 25], [10, 10, 30, 30]]), torch.tensor([0.9, 0.6]),
                torch.tensor([1, 2]))


def _picture(h=40, w=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


class TestImages:
    def test_uint8_reaches_the_detector_in_0_1_as_torchvision_to_dtype(self):
        from torchvision.transforms.v2.functional import to_dtype

        image = _picture()
        det = Recorder()
        Pyramid(ONE_LEVEL).detect(det, image)
        seen = det.images[0]
        assert seen.dtype == torch.float32 and float(seen.max()) <= 1.0
        torch.testing.assert_close(seen, to_dtype(image, torch.float32, scale=True))

    def test_uint8_and_its_float_twin_give_the_same_detections(self):
        image = _picture()
        levels = ((ScaleSpec.fixed(1.5), AreaRange()), (ScaleSpec.fixed(0.5), AreaRange()))
        a, b = Recorder(), Recorder()
        Pyramid(levels).detect(a, image)
        Pyramid(levels).detect(b, image.float() / 255)
        for x, y in zip(a.images, b.images):
            torch.testing.assert_close(x, y)

    def test_pil_images_and_paths_are_read_as_rgb_in_0_1(self, tmp_path):
        image = _picture()
        array = image.permute(1, 2, 0).numpy()
        Image.fromarray(array).save(tmp_path / "a.png")
        Image.fromarray(array).save(tmp_path / "a.jpg")
        expected = image.float() / 255
        for given in (Image.fromarray(array), str(tmp_path / "a.png"), tmp_path / "a.png"):
            det = Recorder()
            out = Pyramid(ONE_LEVEL).detect(det, given)
            torch.testing.assert_close(det.images[0], expected)
            assert out["labels"].tolist() == [1, 2]
        with Image.open(tmp_path / "a.jpg") as jpeg:  # the JpegImageFile of issue 21
            det = Recorder()
            Pyramid(ONE_LEVEL).detect(det, jpeg)
            assert det.images[0].shape == (3, 40, 50) and det.images[0].dtype == torch.float32
        grey = Image.fromarray(array[..., 0])
        det = Recorder()
        Pyramid(ONE_LEVEL).detect_levels(det, grey)
        assert det.images[0].shape == (3, 40, 50)  # converted to RGB
        det = Recorder()
        outs = Pyramid(ONE_LEVEL).detect(det, [str(tmp_path / "a.png"), image])
        assert len(outs) == 2 and torch.equal(outs[0]["boxes"], outs[1]["boxes"])

    def test_unreadable_images_are_refused_with_the_reason(self, tmp_path):
        p = Pyramid(ONE_LEVEL)
        with pytest.raises(FileNotFoundError, match="no such image file"):
            p.detect(Recorder(), str(tmp_path / "missing.jpg"))
        with pytest.raises(TypeError, match="int64: its range is unknown"):
            p.detect(Recorder(), torch.zeros(3, 8, 8, dtype=torch.int64))
        with pytest.raises(TypeError, match="numpy array"):
            p.detect(Recorder(), np.zeros((8, 8, 3), np.uint8))
        with pytest.raises(ValueError, match="a batch .*list\\(images\\)"):
            p.detect(Recorder(), torch.zeros(2, 3, 8, 8))
        with pytest.raises(ValueError, match=r"images\[1\] must be a \[C, H, W\]"):
            p.detect(Recorder(), [torch.zeros(3, 8, 8), torch.zeros(8, 8)])


class TestArguments:
    @pytest.mark.parametrize("kwargs, match", [
        (dict(max_detections=-1), "max_detections must be >= 1"),
        (dict(max_detections=0), "max_detections must be >= 1"),
        (dict(max_detections=1.5), "max_detections must be a positive int"),
        (dict(sigma=float("nan")), "sigma must be a finite number"),
        (dict(sigma=0.0), "sigma must be > 0"),
        (dict(iou_threshold=float("nan")), r"iou_threshold must be in \[0, 1\], got nan"),
        (dict(iou_threshold=1.5), r"iou_threshold must be in \[0, 1\]"),
        (dict(score_threshold=float("nan")), "score_threshold must be a number"),
        (dict(method="gauss"), "method must be one of"),
        (dict(sigma="0.5"), "sigma must be a number"),
        (dict(levels=()), "levels must not be empty"),
        (dict(levels=((ScaleSpec.fixed(1.0),),)), r"levels\[0\] must be a \(ScaleSpec, AreaRange\) pair"),
        (dict(levels=[(1.0, AreaRange())]), r"levels\[0\] must be a \(ScaleSpec, AreaRange\) pair"),
        (dict(max_level_pixels=float("nan")), "max_level_pixels must be a number >= 1"),
    ])
    def test_bad_settings_fail_at_construction(self, kwargs, match):
        with pytest.raises((ValueError, TypeError), match=match):
            Pyramid(**kwargs)

    def test_max_detections_keeps_the_highest_and_none_keeps_all(self):
        boxes = [[i * 20.0, 0, i * 20 + 10, 10] for i in range(5)]  # disjoint: no decay
        scores = [0.5, 0.9, 0.7, 0.8, 0.6]

        def det(image):
            return torch.tensor(boxes), torch.tensor(scores), torch.ones(5, dtype=torch.int64)

        image = torch.zeros(3, 20, 120)
        assert Pyramid(ONE_LEVEL, max_detections=2).detect(det, image)["scores"].tolist() == pytest.approx([0.9, 0.8])
        assert len(Pyramid(ONE_LEVEL, max_detections=None).detect(det, image)["scores"]) == 5
        assert len(Pyramid(ONE_LEVEL, max_detections=np.int64(3)).detect(det, image)["scores"]) == 3

    def test_numpy_numbers_are_numbers(self):
        image, fy, fx = resize_image(torch.rand(3, 10, 20), np.float32(1.5))
        assert image.shape == (3, 15, 30) and (fy, fx) == (1.5, 1.5)
        assert resize_image(torch.rand(3, 10, 20), np.int64(2))[0].shape == (3, 20, 40)
        assert resize_image(torch.rand(3, 10, 20), torch.tensor(0.5))[0].shape == (3, 5, 10)
        p = Pyramid(ONE_LEVEL, sigma=np.float32(0.5), iou_threshold=np.float64(0.3), score_threshold=np.float32(0))
        assert p.sigma == 0.5 and isinstance(p.sigma, float)
        for bad in (float("nan"), math.inf, 0, -1.0, np.float32("nan")):
            with pytest.raises(ValueError, match="factor must be a positive finite number"):
                resize_image(torch.rand(3, 8, 8), bad)
        with pytest.raises(TypeError, match="factor must be a positive finite number"):
            resize_image(torch.rand(3, 8, 8), "2")

    def test_a_level_too_large_is_named_before_anything_runs_or_is_allocated(self):
        det = Recorder()
        levels = ((ScaleSpec.fixed(1.0), AreaRange()), (ScaleSpec.fixed(1e4), AreaRange()))
        with pytest.raises(ValueError, match=r"level 1 \(ScaleSpec\(kind='fixed', size=10000.0.*480x640 image "
                                             r"by 10000 to 4800000x6400000 \(3.07e\+13 pixels"):
            Pyramid(levels).detect(det, torch.zeros(3, 480, 640))
        assert det.images == []  # not even level 0 ran
        with pytest.raises(ValueError, match="above max_pixels"):
            resize_image(torch.zeros(3, 480, 640), 1e4)
        # the bound is the caller's to move
        out = Pyramid(((ScaleSpec.fixed(2.0), AreaRange()),), max_level_pixels=80 * 100).detect(Recorder(),
                                                                                               torch.zeros(3, 40, 50))
        assert len(out["boxes"]) == 2
        with pytest.raises(ValueError, match="max_level_pixels=7.999e\\+03|max_level_pixels=8e\\+03"):
            Pyramid(((ScaleSpec.fixed(2.0), AreaRange()),), max_level_pixels=7999).detect(Recorder(),
                                                                                        torch.zeros(3, 40, 50))


def test_boxes_past_the_image_are_clipped_to_it_even_from_a_tiny_level():
    """Issue 27: a level factor of 1e-6 made a 1x1 level whose detections, mapped back,
    reached far outside the image."""
    def det(image):  # boxes past its own input, as a careless detector gives them
        return torch.tensor([[-5.0, -5, 10, 10], [0.5, 0.25, 0.75, 0.5]]), torch.tensor([0.9, 0.8]), torch.tensor([1, 2])

    out = Pyramid(((ScaleSpec.fixed(1e-6), AreaRange()),)).detect(det, torch.zeros(3, 480, 640))
    by_label = {int(l): b.tolist() for l, b in zip(out["labels"], out["boxes"])}
    assert by_label[1] == [0.0, 0.0, 640.0, 480.0]  # not [-3200, -2400, 6400, 4800]
    assert by_label[2] == pytest.approx([320.0, 120.0, 480.0, 240.0])  # inside the 1x1 input: mapped back, not clipped


class TestManyImages:
    def test_batches_progress_and_generators(self, capsys):
        batches = []

        def run_level(images):  # an adapter-style level detector that records its batch sizes
            batches.append(len(images))
            return [Recorder()(image) for image in images]

        from scalekit import _detector
        from scalekit.scale import register_detector_adapter

        adapter = register_detector_adapter(lambda detector: run_level if detector == "batched" else None)
        try:
            levels = ((ScaleSpec.fixed(1.0), AreaRange()), (ScaleSpec.fixed(0.5), AreaRange()))
            images = [torch.rand(3, 20, 20) for _ in range(5)]
            outs = Pyramid(levels).detect("batched", images, batch_size=2, progress=True)
            assert len(outs) == 5 and batches == [2, 2, 2, 2, 1, 1]  # per batch, per level
            err = capsys.readouterr().err
            assert "Pyramid.detect [####################] 5/5" in err
            batches.clear()
            outs = Pyramid(levels).detect("batched", (image for image in images))  # one batch, no progress
            assert len(outs) == 5 and batches == [5, 5] and capsys.readouterr().err == ""
        finally:
            _detector._ADAPTERS.remove(adapter)
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            Pyramid(levels).detect(Recorder(), images, batch_size=0)


def test_torchvision_detectors_are_found_without_importing_scalekit_detection():
    """A torchvision model runs each level at its own size although the user imported
    only scalekit.scale; scalekit.detection is imported then, not by scalekit itself."""
    code = textwrap.dedent("""
        import sys, torch, torchvision
        from scalekit.scale import AreaRange, Pyramid, ScaleSpec
        assert "scalekit.detection" not in sys.modules
        torch.manual_seed(0)
        model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=3).eval()
        sizes = []
        model.backbone.register_forward_pre_hook(lambda m, x: sizes.append(tuple(x[0].shape[-2:])))
        levels = ((ScaleSpec.fixed(2.0), AreaRange()), (ScaleSpec.fixed(1.0), AreaRange()))
        image = (torch.rand(3, 200, 300) * 255).to(torch.uint8)
        Pyramid(levels).detect(model, image)
        print(sizes, "scalekit.detection" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[(416, 608), (224, 320)] True"  # 400x600 and 200x300 padded to 32, not 320x320


def test_a_torchvision_ssdlite_runs_each_level_at_its_own_size():
    """Any torchvision detector with a GeneralizedRCNNTransform is run by the adapter, not
    only R-CNNs: SSDlite would otherwise resize every level to 320 x 320."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                       num_classes=3).eval()
    sizes = []
    model.backbone.register_forward_pre_hook(lambda m, x: sizes.append(tuple(x[0].shape[-2:])))
    levels = ((ScaleSpec.fixed(1.5), AreaRange()), (ScaleSpec.fixed(0.5), AreaRange()))
    out = Pyramid(levels).detect(model, torch.rand(3, 200, 300))
    assert sizes == [(300, 450), (100, 150)]  # SSD pads to a multiple of 1
    assert torch.isfinite(out["boxes"]).all()
    assert model.transform.resize_inputs  # torchvision resizes again outside the pyramid
