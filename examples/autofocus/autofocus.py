"""AutoFocus vs the full pyramid, SAHI and sliced detection: accuracy per pixel (issue 26).

Trains a small torchvision Faster R-CNN with AutoFocus's focus head (``FocusDetector``) on SNIPER's
positive chips of a seeded small-object set, then runs the same detector on the validation images as
``pyramid`` (every scale, whole image: ``Pyramid``), ``sahi`` (SAHI's ``get_sliced_prediction`` at its
benchmark settings: ``--slice-size`` slices at 1x, overlap 0.25, the full image, NMS 0.5, confidence
0.01; left out, and said so, without SAHI), ``sliced`` (``sliced_detect``, the same settings) and
``autofocus_T1_T2`` (``AutoFocus`` at each ``--thresholds`` pair). Writes one table (COCO AP, AP_small,
pixels, focus recall), ``results.json`` and the focus chips drawn on one image.

    python examples/autofocus/autofocus.py --out runs/autofocus
    python examples/autofocus/autofocus.py --data /data/aerial --device cuda --epochs 24

``--data ROOT``: ``ROOT/{train,val}/images/`` and ``ROOT/{train,val}/annotations.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

report = common.import_script(os.path.join(os.path.dirname(os.path.abspath(__file__)), "report.py"), "autofocus_report")
targets, verdicts = report.targets, report.verdicts

from scalekit.autofocus import AutoFocus  # noqa: E402
from scalekit.chips import Chip, ChipDataset, ChipGenerator  # noqa: E402
from scalekit.datasets import CocoDetection  # noqa: E402
from scalekit.datasets.synthetic import make_synthetic_small_objects  # noqa: E402
from scalekit.detection import FocusDetector  # noqa: E402
from scalekit.drawing import draw_detections  # noqa: E402
from scalekit.evaluation import coco_evaluate, to_coco_results  # noqa: E402
from scalekit.scale import AreaRange, Pyramid, ScaleSpec, resize_image  # noqa: E402
from scalekit.slicing import slice_grid, sliced_detect  # noqa: E402

# Coarsest first: SNIPER's valid ranges (thesis §3.4) at scales 0.5, 1 and 2 of a 1500 x 2000 image
# (SNIPER's 512-px longer side, 1.667 and 3 are for 640-px COCO images).
LEVELS = ((ScaleSpec.fixed(0.5), AreaRange(120, math.inf)), (ScaleSpec.fixed(1.0), AreaRange(32, 150)),
          (ScaleSpec.fixed(2.0), AreaRange(0, 80)))


def parse_args(argv=None):
    d = "(default: %(default)s)"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--out", default="runs/autofocus", help=f"output folder {d}")
    add("--data", help="COCO-format root (default: a seeded synthetic set in OUT/data)")
    add("--synthetic", type=int, nargs=2, default=(40, 16), metavar=("TRAIN", "VAL"), help=f"images {d}")
    add("--image-size", type=int, nargs=2, default=(1500, 2000), metavar=("H", "W"), help=f"synthetic images {d}")
    add("--large-size", type=int, nargs=2, default=(120, 400), help=f"synthetic large objects, px {d}")
    add("--epochs", type=int, default=12, help=f"training epochs {d}")
    add("--batch-size", type=int, default=4, help=f"chips per step {d}")
    add("--lr", type=float, default=0.02, help=f"SGD learning rate, 10x lower in the last epoch {d}")
    add("--warmup", type=int, default=100, help=f"linear warm-up steps {d}")
    add("--chip-size", type=int, default=512, help=f"SNIPER's training chip side {d}")
    add("--max-steps", type=int, help="stop each epoch after N steps (smoke tests)")
    add("--slice-size", type=int, default=640, help=f"SAHI's and sliced_detect's slice side {d}")
    add("--thresholds", nargs="+", default=["0.02,0.2", "0.1,0.3", "0.3,0.5"],
        help=f"AutoFocus settings, each 'coarse->middle,middle->fine' focus thresholds {d}")
    add("--no-sahi", action="store_true", help="leave SAHI out even if it is installed")
    add("--seed", type=int, default=0, help=f"seeds training {d}")
    add("--device", default="cpu", help=f"cpu or cuda {d}")
    add("--amp", action="store_true", help="mixed precision (training and inference)")
    add("--threads", type=int, help="torch CPU threads")
    add("--resume", action="store_true", help="continue training from OUT/checkpoints/autofocus.pt")
    add("--figure", help="the focus-chips PNG (default: OUT/focus_chips.png)")
    args = p.parse_args(argv)
    if min(args.epochs, args.batch_size, args.slice_size) < 1:
        p.error("--epochs, --batch-size and --slice-size must be at least 1")
    try:
        args.thresholds = [tuple(float(v) for v in t.split(",")) for t in args.thresholds]
        assert all(len(t) == len(LEVELS) - 1 for t in args.thresholds)
    except (ValueError, AssertionError):
        p.error(f"--thresholds: each setting is two numbers 'T1,T2', got {args.thresholds}")
    return args


def load_data(args):
    root = args.data or os.path.join(args.out, "data")
    for split, n, seed in (("train", args.synthetic[0], 1000), ("val", args.synthetic[1], 2000)):
        if args.data is None and not os.path.exists(os.path.join(root, split, "annotations.json")):
            make_synthetic_small_objects(os.path.join(root, split), n, seed, image_size=tuple(args.image_size),
                                         large_size=tuple(args.large_size))
    try:
        return [CocoDetection(os.path.join(root, s, "images"), os.path.join(root, s, "annotations.json"))
                for s in ("train", "val")]
    except (FileNotFoundError, ValueError) as exc:
        common.fail(f"--data: {exc}")


def train(args, model, dataset, log):
    generator = ChipGenerator(args.chip_size, levels=LEVELS[::-1], neg_chips_per_image=0)
    chips = ChipDataset(dataset, generator, seed=args.seed)  # positive chips only: no RPN to mine negatives
    loader = torch.utils.data.DataLoader(chips, batch_size=args.batch_size, shuffle=True,
                                         collate_fn=chips.collate_fn, generator=torch.Generator().manual_seed(args.seed))
    per_epoch = len(loader) if args.max_steps is None else min(len(loader), args.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    log(f"{len(dataset)} training images -> {len(chips)} chips of {args.chip_size} px, {per_epoch} steps per epoch")

    def steps(epoch):
        for n, (images, targets) in enumerate(loader):
            if n >= per_epoch:
                return
            step = epoch * per_epoch + n
            lr = args.lr * min(1.0, (step + 1) / max(1, args.warmup)) * (0.1 if epoch == args.epochs - 1 > 0 else 1)
            for group in optimizer.param_groups:
                group["lr"] = lr
            keys = ("boxes", "labels", "ignore_boxes", "valid_range")
            targets = [{k: v.to(args.device) for k, v in t.items() if k in keys} for t in targets]
            with common.autocast(torch.device(args.device), args.amp):
                losses = model([im.to(args.device) for im in images], targets)
            yield common.optimizer_step(optimizer, sum(losses.values()), clip_norm=10.0)

    return common.train_epochs("autofocus", model, optimizer, args.epochs, steps, folder=args.out,
                               resume=args.resume, total=per_epoch, map_location=args.device, log=log)


def sahi_mode(args, detector):
    """SAHI's ``get_sliced_prediction`` at its benchmark settings, the detector wrapped as its DetectionModel."""
    from sahi.models.base import DetectionModel
    from sahi.predict import get_sliced_prediction
    from sahi.prediction import ObjectPrediction

    class Model(DetectionModel):
        pixels = 0

        def perform_inference(self, image):
            Model.pixels += image.shape[0] * image.shape[1]
            image = torch.from_numpy(image).permute(2, 0, 1).to(args.device) / 255.0
            self._original_predictions = detector([image])[0]

        def _create_object_prediction_list_from_original_predictions(self, shift_amount_list=None,
                                                                     full_shape_list=None):
            shift, full = shift_amount_list or [0, 0], full_shape_list  # SAHI passes [x, y] or [[x, y]]
            shift = shift[0] if isinstance(shift[0], list) else shift
            full = full[0] if full and isinstance(full[0], list) else full
            d = self._original_predictions
            keep = d["scores"] >= self.confidence_threshold  # as SAHI's own models filter
            self._object_prediction_list_per_image = [[
                ObjectPrediction(bbox=b, category_id=int(c), score=float(s), shift_amount=shift, full_shape=full)
                for b, s, c in zip(d["boxes"][keep].tolist(), d["scores"][keep], d["labels"][keep])]]

    def run(image):
        Model.pixels, model = 0, Model(confidence_threshold=0.01, load_at_init=False, device=str(args.device))
        p = get_sliced_prediction(
            (image * 255).round().byte().permute(1, 2, 0).numpy(), model, slice_height=args.slice_size,
            slice_width=args.slice_size, overlap_height_ratio=0.25, overlap_width_ratio=0.25,
            perform_standard_pred=True, postprocess_type="NMS", postprocess_match_metric="IOU",
            postprocess_match_threshold=0.5, verbose=0, force_postprocess_type=True,
            confidence_threshold=0.01).object_prediction_list
        return {"boxes": torch.tensor([q.bbox.to_xyxy() for q in p]).reshape(-1, 4),
                "scores": torch.tensor([q.score.value for q in p]),
                "labels": torch.tensor([q.category.id for q in p], dtype=torch.int64)}, Model.pixels

    return run


def run_modes(args, model, val, log):
    """Every mode on every validation image: predictions, pixels, seconds and focus recall per mode."""
    detector, pyramid = model.model, Pyramid(LEVELS)  # the torchvision detector inside FocusDetector
    modes = {"pyramid": lambda im: (pyramid.detect(detector, im), None)}  # None: pixels from the scales run
    if not args.no_sahi:
        try:
            modes["sahi"] = sahi_mode(args, detector)
        except ImportError:
            log("SAHI is not installed (pip install sahi): its row is left out")

    def sliced(im):
        windows = slice_grid(*im.shape[-2:], args.slice_size, 0.25)
        pixels = float(((windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1])).sum())
        pixels += im.shape[-2] * im.shape[-1] if len(windows) > 1 else 0  # the full-image pass, as SAHI
        return sliced_detect(detector, im, slice_size=args.slice_size, overlap=0.25, full_image=ScaleSpec.fixed(1.0),
                             merge="nms", iou_threshold=0.5, score_threshold=0.01), pixels

    modes["sliced"] = sliced
    focus = [f"autofocus_{t[0]:g}_{t[1]:g}" for t in args.thresholds]
    for name, af in zip(focus, [AutoFocus(LEVELS, thresholds=t) for t in args.thresholds]):
        modes[name] = lambda im, af=af: (af.detect(model, im), None)
    out = {n: {"predictions": {}, "pixels": 0.0, "seconds": 0.0, "small": 0, "small_in_chips": 0, "fractions": []}
           for n in modes}
    for i in common.Progress(range(len(val)), desc="inference"):
        image, target = val[i]
        boxes = target["boxes"]
        small = boxes[((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) < 32 ** 2]
        c = (small[:, :2] + small[:, 2:]) / 2
        for name, run in modes.items():
            r, start = out[name], time.perf_counter()
            with torch.no_grad(), common.autocast(torch.device(args.device), args.amp):
                det, pixels = run(image)
            r["seconds"] += time.perf_counter() - start
            r["predictions"][int(target["image_id"])] = {k: det[k].cpu() for k in ("boxes", "scores", "labels")}
            if pixels is None:  # the pyramid (every scale whole) or AutoFocus (its pixel fraction at each scale)
                fractions = det.get("pixel_fraction", [1.0] * len(LEVELS))
                pixels = sum(f * lh * lw for f, (_, lh, lw) in zip(fractions, pyramid.level_sizes(*image.shape[-2:])))
            r["pixels"] += pixels
            if "chips" in det:  # AutoFocus: small objects' centres inside a chip of the finest scale
                f = det["chips"][-1]
                inside = ((c[:, None, 0] >= f[None, :, 0]) & (c[:, None, 0] < f[None, :, 2])
                          & (c[:, None, 1] >= f[None, :, 1]) & (c[:, None, 1] < f[None, :, 3]))
                r["small"], r["small_in_chips"] = r["small"] + len(c), r["small_in_chips"] + int(inside.any(1).sum())
                r["fractions"].append(det["pixel_fraction"])
                if i == 0 and name == focus[0]:
                    draw_chips(args, image, target, det, val.class_names)
    return out


def draw_chips(args, image, target, det, class_names, scale: float = 0.5):
    """The chips AutoFocus ran at the middle (one colour) and finest (another) scale, with its detections."""
    small, _, _ = resize_image(image, scale)
    chips = [Chip(level=k, scale=1.0, box=b * scale) for k in (1, 2) for b in det["chips"][k]]
    shown = {k: (det[k] * scale if k == "boxes" else det[k]) for k in ("boxes", "scores", "labels")}
    picture = draw_detections(small, shown, ground_truth=target["boxes"] * scale, chips=chips,
                              class_names=class_names, score_threshold=0.5)
    from PIL import Image  # 256 colours: a third of the bytes of the noisy true-colour picture

    Image.fromarray(picture.permute(1, 2, 0).numpy()).quantize(256).save(
        args.figure or os.path.join(args.out, "focus_chips.png"))


def summarise(args, val, runs, train_seconds) -> dict:
    modes, n = {}, len(val)
    for name, r in runs.items():
        stats = coco_evaluate(to_coco_results(r["predictions"], val.label_to_category), val.coco.dataset)
        modes[name] = {**{k: stats[k] for k in ("AP", "AP50", "APs", "APm", "APl")},
                       "megapixels_per_image": r["pixels"] / n / 1e6,
                       "pixels_vs_pyramid": r["pixels"] / runs["pyramid"]["pixels"],
                       "seconds_per_image": r["seconds"] / n,
                       "detections_per_image": sum(len(d["scores"]) for d in r["predictions"].values()) / n,
                       "focus_recall": r["small_in_chips"] / r["small"] if r["small"] else None}
        if r["fractions"]:  # AutoFocus: per scale, the pixels run over the whole image's at that scale
            modes[name]["pixel_fraction_per_scale"] = np.mean(r["fractions"], 0).tolist()
    return {"modes": modes, "val_images": n, "train_seconds": train_seconds, "threads": torch.get_num_threads(),
            "args": {k: v for k, v in vars(args).items() if k not in ("out", "figure")},
            "targets": targets(modes)}


def table(result) -> str:
    return report.table(result, [spec.factor(1, 1) for spec, _ in LEVELS])


def crop_consistent(module: torch.nn.Module) -> None:
    """GroupNorm -> BatchNorm, in place. GroupNorm normalises each input over its whole extent, so a
    crop's features differ from the same pixels' in the whole image (17 % after the first stage here),
    and every mode that runs crops (slices, chips) would see another network than the full pyramid."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.GroupNorm):
            setattr(module, name, torch.nn.BatchNorm2d(child.num_channels))
        else:
            crop_consistent(child)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    common.seed_everything(args.seed)
    os.makedirs(args.out, exist_ok=True)
    log = common.stage_log("autofocus")
    train_set, val = load_data(args)
    detector = common.build_detector("tiny", len(train_set.label_to_category), False)
    crop_consistent(detector.backbone)
    # inference: more proposals and detections than the tiny model's defaults, the same for every mode
    detector.rpn._pre_nms_top_n["testing"], detector.rpn._post_nms_top_n["testing"] = 2000, 1000
    detector.roi_heads.detections_per_img = 300
    model, start = FocusDetector(detector).to(args.device), time.perf_counter()  # the head on the stride-16 map
    train(args, model, train_set, log)
    train_seconds = time.perf_counter() - start
    result = summarise(args, val, run_modes(args, model.eval(), val, log), train_seconds)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(table(result) + "\n" + verdicts(result), flush=True)
    return result


if __name__ == "__main__":
    main()
