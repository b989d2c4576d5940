"""Train, infer and evaluate a detector with one of four scale recipes (thesis ch. 2-3).

Recipes (``--recipe``):

* ``single``: whole images at one scale (800x1333, times ``--size-scale``);
* ``multiscale``: whole images at the three SNIP scales, every object trained
  at every scale (multi-scale training, thesis Fig. 2.5);
* ``snip``: the same pyramid, but at each scale only the objects in its valid
  range are objects; the others are ignore boxes (their anchors and RoIs give
  no gradient, §2.6.1); the finest scale is trained on SNIP's 1000x1000
  sub-image chips (§2.6.2, :func:`scalekit.chips.snip_chips`);
* ``sniper``: 512x512 chips at 3x, 1.667x and longer side 512 (§3.3): positive
  chips, plus negative chips mined from the proposals of a short RPN-only run
  (``--rpn-epochs``, trained without negatives), two per image resampled each
  epoch; ``--no-negatives`` drops them (the ablation of Table 3.2).

Every recipe is evaluated the same way: the SNIP pyramid with Soft-NMS
(:class:`scalekit.scale.Pyramid`; one unbounded level for ``single``), then
COCO AP, AP50, AP small/medium/large and recall by size.

Without ``--data`` a seeded synthetic COCO-format dataset is generated on
first use: the default synthetic set at half its resolution, with
size-dependent detail (``make_synthetic_coco(detail=...)``), and every pixel
size of the thesis (scales, valid ranges, chip sizes) halved with it
(``--size-scale``). Outputs in ``--out``: ``results.json``, ``log.jsonl``,
``loss.png``, ``checkpoint.pt`` (each epoch; ``--resume`` continues from it).

    python examples/snip_sniper/train.py --recipe sniper --out runs/sniper
    torchrun --nproc_per_node 4 examples/snip_sniper/train.py --recipe snip --data /coco \\
        --backbone resnet50 --pretrained --device cuda --amp --size-scale 1
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
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

from scalekit.chips import ChipDataset, ChipGenerator, collate_chips, snip_chips  # noqa: E402
from scalekit.datasets import CocoDetection  # noqa: E402
from scalekit.datasets.synthetic import make_synthetic_coco  # noqa: E402
from scalekit.detection import honour_ignore_boxes, keep_input_size  # noqa: E402
from scalekit.evaluation import coco_evaluate, to_coco_results  # noqa: E402
from scalekit.scale import SNIP_LEVELS, SNIPER_LEVELS, AreaRange, Pyramid, ScaleSpec, resize_image  # noqa: E402

RECIPES = ("single", "multiscale", "snip", "sniper")
# Thesis sizes in pixels, multiplied by --size-scale.
SINGLE_SCALE = (800, 1333)  # the single-scale baseline (thesis Table 3.3, first row)
SNIP_CHIP = 1000  # SNIP's sub-image chips at the finest level (§2.6.2)
SNIPER_CHIP, SNIPER_STRIDE = 512, 32  # SNIPER's chips (§3.3.1)


# ----------------------------------------------------------------------------- levels


def scaled_spec(spec: ScaleSpec, s: float) -> ScaleSpec:
    """A level's resize with every pixel size multiplied by ``s`` (fixed factors stay)."""
    if spec.kind == "fixed":
        return spec
    if spec.kind == "fit_longer":
        return ScaleSpec.fit_longer(spec.size * s)
    return ScaleSpec.shorter_side(spec.size * s, spec.max_size * s)


def scaled_levels(levels, s: float):
    return tuple((scaled_spec(spec, s), AreaRange(area.lo * s, area.hi * s)) for spec, area in levels)


def single_level(s: float):
    return ((ScaleSpec.shorter_side(SINGLE_SCALE[0] * s, SINGLE_SCALE[1] * s), AreaRange()),)


# ----------------------------------------------------------------------------- training items


def _window_target(boxes, labels, factor, window, area, min_size=2.0):
    """Boxes of one resized image (factor) inside ``window`` (level pixels): valid ones as
    targets, the rest (out of ``area`` or mostly cut off) as ignore boxes."""
    x1, y1, x2, y2 = window
    scaled = boxes * factor
    clipped = torch.stack([scaled[:, 0].clamp(x1, x2), scaled[:, 1].clamp(y1, y2),
                           scaled[:, 2].clamp(x1, x2), scaled[:, 3].clamp(y1, y2)], 1)
    wh = clipped[:, 2:] - clipped[:, :2]
    keep = (wh >= min_size).all(1)
    full = (scaled[:, 2:] - scaled[:, :2]).clamp(min=1e-6).prod(1)
    kept_fraction = wh.clamp(min=0).prod(1) / full
    valid = keep & (kept_fraction >= 0.5)
    if area is not None:
        valid &= area.valid_mask(boxes)
    shifted = clipped - torch.tensor([x1, y1, x1, y1])
    return {"boxes": shifted[valid], "labels": labels[valid], "ignore_boxes": shifted[keep & ~valid]}


class LevelImages(Dataset):
    """Whole (or windowed) images at pyramid levels: ``single``, ``multiscale`` and ``snip``.

    Items are ``(image index, level, window in level pixels or None)``; ``ranges``
    decides whether out-of-range objects are ignore boxes (SNIP) or objects (MST)."""

    def __init__(self, data, levels, *, ranges: bool, snip_chip: float | None = None, seed: int = 0):
        self.data, self.levels, self.ranges = data, levels, ranges
        self.items, rng = [], np.random.default_rng(seed)
        self.pixels = 0.0
        for i in range(len(data)):
            boxes, _, (h, w) = data.annotations(i)
            for k, (spec, area) in enumerate(levels):
                f = spec.factor(h, w)
                lh, lw = round(h * f), round(w * f)
                if snip_chip is not None and k == 0 and max(lh, lw) > snip_chip:
                    small = boxes[area.valid_mask(boxes)] * f
                    for window in snip_chips(small, (lh, lw), int(snip_chip), generator=rng).tolist():
                        self.items.append((i, k, window))
                        self.pixels += (window[2] - window[0]) * (window[3] - window[1])
                else:
                    self.items.append((i, k, None))
                    self.pixels += lh * lw

    def __len__(self):
        return len(self.items)

    def __getitem__(self, n):
        i, k, window = self.items[n]
        image, target = self.data[i]
        spec, area = self.levels[k]
        resized, fy, fx = resize_image(image, spec.factor(*image.shape[-2:]))
        if window is None:
            window = [0.0, 0.0, float(resized.shape[-1]), float(resized.shape[-2])]
        else:
            x1, y1, x2, y2 = (int(round(v)) for v in window)
            resized, window = resized[:, y1:y2, x1:x2], [float(x1), float(y1), float(x2), float(y2)]
        t = _window_target(target["boxes"], target["labels"], torch.tensor([fx, fy, fx, fy]), window,
                           area if self.ranges else None)
        crowd = target["ignore_boxes"].reshape(-1, 4)
        if len(crowd):
            t["ignore_boxes"] = torch.cat([t["ignore_boxes"], crowd * torch.tensor([fx, fy, fx, fy])
                                           - torch.tensor(window[:2] * 2)])
        return resized, t


# ----------------------------------------------------------------------------- model


class TinyBackbone(torch.nn.Module):
    """A five-stage conv net with an FPN on strides 8, 16 and 32: small enough for a CPU."""

    def __init__(self, widths=(16, 32, 64, 96, 128), out_channels: int = 64):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        layers, c = [], 3
        for w in widths:
            layers.append(torch.nn.Sequential(torch.nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False),
                                              torch.nn.GroupNorm(8, w), torch.nn.ReLU(inplace=True),
                                              torch.nn.Conv2d(w, w, 3, padding=1, bias=False),
                                              torch.nn.GroupNorm(8, w), torch.nn.ReLU(inplace=True)))
            c = w
        self.stages = torch.nn.ModuleList(layers)
        self.fpn = FeaturePyramidNetwork(list(widths[2:]), out_channels)
        self.out_channels = out_channels

    def forward(self, x):
        from collections import OrderedDict

        maps = OrderedDict()
        for n, stage in enumerate(self.stages):
            x = stage(x)
            if n >= 2:
                maps[str(n - 2)] = x
        return self.fpn(maps)


def build_model(backbone: str, num_classes: int, pretrained: bool):
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    if backbone == "tiny":
        if pretrained:
            common.fail("--pretrained: the tiny backbone has no pretrained weights; use --backbone resnet50")
        body = TinyBackbone()
        anchors = AnchorGenerator(((12, 24), (48, 96), (192, 384)), ((0.5, 1.0, 2.0),) * 3)
        pool = MultiScaleRoIAlign(["0", "1", "2"], 7, 2)
        model = FasterRCNN(body, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=pool,
                           box_head=TwoMLPHead(body.out_channels * 49, 256),
                           box_predictor=FastRCNNPredictor(256, num_classes + 1),
                           rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
                           rpn_pre_nms_top_n_test=600, rpn_post_nms_top_n_test=300,
                           rpn_batch_size_per_image=128, box_batch_size_per_image=128,
                           box_detections_per_img=100, box_score_thresh=0.001)
    else:
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

        weights = "DEFAULT" if pretrained else None
        body = resnet_fpn_backbone(backbone_name=backbone, weights=weights, trainable_layers=3 if pretrained else 5)
        model = FasterRCNN(body, num_classes=num_classes + 1, box_score_thresh=0.001)
    return keep_input_size(honour_ignore_boxes(model))


# ----------------------------------------------------------------------------- data


def prepare_synthetic(root: str, size_scale: float, counts=(120, 30), verbose: bool = True) -> str:
    """Generate the default synthetic train and val sets in ``root`` unless they are there."""
    s = size_scale
    sizes = tuple((round(h * s), round(w * s)) for h, w in ((480, 640), (600, 800), (768, 1024), (1000, 750)))
    kw = dict(min_size=max(4, round(12 * s)), max_size=round(400 * s), image_sizes=sizes, detail=max(2, round(6 * s)))
    for split, n, seed in (("train", counts[0], 1000), ("val", counts[1], 2000)):
        if not os.path.exists(os.path.join(root, split, "annotations.json")):  # written last
            if verbose:
                print(f"generating {n} synthetic {split} images into {root}/{split} ...", flush=True)
            make_synthetic_coco(os.path.join(root, split), num_images=n, seed=seed, **kw)
    return root


def load_data(args):
    """(train, val) CocoDetection; generates the synthetic set on first use."""
    if args.data is None:
        root = args.synthetic_dir or os.path.join(args.out, "data")
        if args.main:
            prepare_synthetic(root, args.size_scale, args.synthetic)
        args.dist.barrier()
        paths = [(os.path.join(root, sp, "images"), os.path.join(root, sp, "annotations.json")) for sp in ("train", "val")]
    else:
        paths = [(os.path.join(args.data, sp, "images"), os.path.join(args.data, sp, "annotations.json"))
                 for sp in ("train", "val")]
    paths = [(args.train_images or paths[0][0], args.train_ann or paths[0][1]),
             (args.val_images or paths[1][0], args.val_ann or paths[1][1])]
    out = []
    for name, (images, ann) in zip(("train", "val"), paths):
        try:
            out.append(CocoDetection(images, ann))
        except (FileNotFoundError, ValueError) as exc:
            common.fail(f"--data ({name}): {exc}")
        if len(out[-1]) == 0:
            common.fail(f"--data ({name}): {ann} has no images")
    if out[0].label_to_category != out[1].label_to_category:
        common.fail("--data: train and val have different categories")
    return out


class Subset(torch.utils.data.Subset):
    def annotations(self, i):
        return self.dataset.annotations(self.indices[i])


def limit(data, n):
    if n is None or n >= len(data):
        return data
    s = Subset(data, list(range(n)))
    s.coco, s.label_to_category, s.ids, s.class_names = data.coco, data.label_to_category, data.ids[:n], data.class_names
    return s


# ----------------------------------------------------------------------------- proposals for SNIPER


class RPNOnly(torch.nn.Module):
    """The detector's RPN losses alone (SNIPER's short proposal run); a module so that DDP can wrap it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images, targets):
        images, targets = self.model.transform(images, targets)
        _, losses = self.model.rpn(images, self.model.backbone(images.tensors), targets)
        return losses


@torch.no_grad()
def extract_proposals(model, data, levels, device, per_scale: int, progress_quiet: bool):
    """Per image, the RPN's top ``per_scale`` proposals at every level, in original pixels."""
    core = model.module if hasattr(model, "module") else model
    core.eval()
    core.rpn._post_nms_top_n["testing"] = per_scale
    out = []
    for i in common.Progress(range(len(data)), desc="proposals", quiet=progress_quiet):
        image, _ = data[i]
        props = []
        for spec, _area in levels:
            resized, fy, fx = resize_image(image, spec.factor(*image.shape[-2:]))
            images, _ = core.transform([resized.to(device)])
            boxes, _ = core.rpn(images, core.backbone(images.tensors))
            props.append(boxes[0][:per_scale].cpu() / torch.tensor([fx, fy, fx, fy]))
        out.append(torch.cat(props))
    return out


# ----------------------------------------------------------------------------- loops


def train_epochs(args, model, loader, sampler, dataset, optimizer, scheduler, start_epoch, epochs, log, tag,
                 rpn_only=False):
    """Train; returns (items seen, seconds)."""
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and args.dist.device.type == "cuda")
    per_epoch = len(loader) if args.max_iters is None else min(len(loader), args.max_iters)
    items, seconds, it = 0, 0.0, start_epoch * per_epoch
    core = model.module if hasattr(model, "module") else model
    for epoch in range(start_epoch, epochs):
        model.train()
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        bar = common.Progress(loader, desc=f"{tag} epoch {epoch + 1}/{epochs}", quiet=not args.main)
        start = time.perf_counter()
        for n, (images, targets) in enumerate(bar):
            if args.max_iters is not None and n >= args.max_iters:
                break
            images = [im.to(args.dist.device) for im in images]
            targets = [{k: v.to(args.dist.device) for k, v in t.items() if k in ("boxes", "labels", "ignore_boxes")}
                       for t in targets]
            with common.autocast(args.dist.device, args.amp):
                losses = model(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                common.fail(f"{tag}: the loss became {loss.item()} at epoch {epoch + 1}, iteration {n}; lower --lr")
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            items += len(images)
            it += 1
            values = {k: float(v.detach()) for k, v in losses.items()}
            bar.set(loss=float(loss.detach()))
            if args.main and it % args.log_every == 0:
                log.write(phase=tag, epoch=epoch, iter=it, lr=optimizer.param_groups[0]["lr"], loss=float(loss.detach()), **values)
        seconds += time.perf_counter() - start
        if args.main and not rpn_only:
            common.save_checkpoint(os.path.join(args.out, "checkpoint.pt"), model=core, optimizer=optimizer,
                                   scheduler=scheduler, epoch=epoch + 1, recipe=args.recipe,
                                   train_seconds=args.train_seconds + seconds, train_items=args.train_items + items)
            common.plot_curves(log.path, os.path.join(args.out, "loss.png"))
        args.dist.barrier()
    return items, seconds


def make_optimizer(args, model, iters_per_epoch, epochs):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    total = max(1, iters_per_epoch * epochs)
    warmup = min(args.warmup, total // 4)

    def factor(step):  # linear warm-up, then a step down by 10 at 3/4 of training
        if step < warmup:
            return 0.1 + 0.9 * step / max(1, warmup)
        return 0.1 if step >= 0.75 * total else 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def loader_for(args, dataset, shuffle=True):
    sampler = DistributedSampler(dataset, shuffle=shuffle, seed=args.seed) if args.dist.world_size > 1 else None
    g = torch.Generator().manual_seed(args.seed)
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=args.workers, collate_fn=collate_chips, generator=g), sampler


@torch.no_grad()
def evaluate(args, model, val, levels):
    """COCO metrics of the pyramid's detections on ``val``; returns (stats, seconds per image)."""
    core = model.module if hasattr(model, "module") else model
    core.eval()
    pyramid = Pyramid(levels)
    predictions, seconds = {}, 0.0
    for i in common.Progress(range(len(val)), desc="evaluate", quiet=not args.main):
        image, target = val[i]
        start = time.perf_counter()
        det = pyramid.detect(core, image.to(args.dist.device))
        seconds += time.perf_counter() - start
        predictions[int(target["image_id"])] = {k: v.cpu() for k, v in det.items()}
        if i < args.draw:
            draw_detections(image, predictions[int(target["image_id"])], target["boxes"], val.class_names,
                            os.path.join(args.out, f"detections_{i:03d}.png"))
    # Evaluate in 1 / size_scale pixels, so that COCO's small / medium / large
    # (32 and 96 pixels) mean the same object sizes as at the thesis' resolution.
    f = 1.0 / args.size_scale
    results = to_coco_results({i: {**d, "boxes": d["boxes"] * f} for i, d in predictions.items()},
                              val.label_to_category)
    keep = set(predictions)
    gt = val.coco.dataset
    gt = {**gt, "images": [{**im, "width": im["width"] * f, "height": im["height"] * f}
                           for im in gt["images"] if im["id"] in keep],
          "annotations": [{**a, "bbox": [v * f for v in a["bbox"]], "area": a["area"] * f * f}
                          for a in gt["annotations"] if a["image_id"] in keep]}
    stats = coco_evaluate(results, gt)
    return stats, seconds / max(1, len(val))


def draw_detections(image, det, gt_boxes, names, path, min_score: float = 0.3, top: int = 50) -> None:
    """A picture of one image: ground truth in white, detections above ``min_score`` in colour."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray((image.clamp(0, 1) * 255).byte().permute(1, 2, 0).cpu().numpy())
    draw = ImageDraw.Draw(picture)
    for box in gt_boxes.tolist():
        draw.rectangle(box, outline="white")
    colours = ["#ff3030", "#30ff30", "#3080ff", "#ffff30", "#ff30ff", "#30ffff"]
    keep = (det["scores"] >= min_score).nonzero().flatten()[:top]
    for k in keep.tolist():
        label = int(det["labels"][k])
        box = det["boxes"][k].tolist()
        draw.rectangle(box, outline=colours[label % len(colours)], width=2)
        draw.text((box[0] + 2, box[1] + 1), f"{names[label - 1]} {float(det['scores'][k]):.2f}",
                  fill=colours[label % len(colours)])
    picture.save(path)


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = "(default: %(default)s)"
    p.add_argument("--recipe", choices=RECIPES, default="sniper", help=f"training protocol {d}")
    p.add_argument("--no-negatives", action="store_true", help="sniper: positive chips only, no RPN pre-run (Table 3.2)")
    p.add_argument("--out", default="runs/snip_sniper", help=f"output folder {d}")
    p.add_argument("--data", default=None, help="COCO-format root with train/{images,annotations.json} and "
                   "val/{images,annotations.json} (default: a synthetic set generated in OUT/data)")
    p.add_argument("--train-images", help="train image folder, overrides --data's layout (e.g. COCO's train2017/)")
    p.add_argument("--train-ann", help="train annotation JSON, overrides --data's layout")
    p.add_argument("--val-images", help="val image folder, overrides --data's layout")
    p.add_argument("--val-ann", help="val annotation JSON, overrides --data's layout")
    p.add_argument("--synthetic", type=int, nargs=2, default=(120, 30), metavar=("TRAIN", "VAL"),
                   help=f"synthetic images to generate when no --data is given {d}")
    p.add_argument("--synthetic-dir", help="where the synthetic set lives (default: OUT/data; share it between runs)")
    p.add_argument("--size-scale", type=float, default=None,
                   help="multiplies every pixel size of the thesis (scales, ranges, chips); also the synthetic "
                        "set's resolution; boxes are evaluated in 1/SIZE_SCALE pixels so that COCO's small, "
                        "medium and large keep their meaning (default: 0.5 for synthetic data, 1 with --data)")
    p.add_argument("--train-limit", type=int, help="use only the first N training images (default: all)")
    p.add_argument("--val-limit", type=int, help="evaluate on the first N validation images (default: all)")
    p.add_argument("--backbone", choices=("tiny", "resnet18", "resnet50", "resnet101"), default="tiny",
                   help=f"tiny: a small conv net + FPN for CPUs; resnet*: torchvision ResNet-FPN {d}")
    p.add_argument("--pretrained", action="store_true", help="ImageNet weights from torchvision for resnet* (downloaded "
                   "by torchvision on first use)")
    p.add_argument("--epochs", type=int, default=5, help=f"training epochs {d}")
    p.add_argument("--rpn-epochs", type=int, default=2, help=f"sniper: epochs of the RPN-only run that mines negative chips {d}")
    p.add_argument("--proposals-per-scale", type=int, default=300, help=f"sniper: RPN proposals kept per scale {d}")
    p.add_argument("--max-iters", type=int, default=None, help="stop each epoch after N iterations (smoke tests)")
    p.add_argument("--batch-size", type=int, default=4, help=f"images or chips per iteration per process {d}")
    p.add_argument("--lr", type=float, default=0.02, help=f"SGD learning rate (momentum 0.9, wd 1e-4) {d}")
    p.add_argument("--warmup", type=int, default=100, help=f"linear warm-up iterations {d}")
    p.add_argument("--seed", type=int, default=0, help=f"seeds everything {d}")
    p.add_argument("--device", default="cpu", help=f"cpu, cuda or cuda:N {d}")
    p.add_argument("--amp", action="store_true", help="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    p.add_argument("--workers", type=int, default=0, help=f"DataLoader worker processes {d}")
    p.add_argument("--log-every", type=int, default=5, help=f"log every N iterations {d}")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue from a checkpoint (default path: OUT/checkpoint.pt); --epochs is the total")
    p.add_argument("--draw", type=int, default=4, help=f"validation images drawn with their detections {d}")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.size_scale is None:
        args.size_scale = 1.0 if args.data or args.train_ann else 0.5
    if args.size_scale <= 0:
        p.error("--size-scale must be positive")
    if args.no_negatives and args.recipe != "sniper":
        p.error("--no-negatives applies to --recipe sniper only")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.dist = common.Distributed(args.device)
    args.main = args.dist.main
    common.seed_everything(args.seed + args.dist.rank)
    os.makedirs(args.out, exist_ok=True)
    train, val = load_data(args)
    train, val = limit(train, args.train_limit), limit(val, args.val_limit)
    s = args.size_scale
    test_levels = scaled_levels(SNIP_LEVELS, s) if args.recipe != "single" else single_level(s)

    torch.manual_seed(args.seed)
    model = build_model(args.backbone, len(train.label_to_category), args.pretrained).to(args.dist.device)
    log = common.JsonlLog(os.path.join(args.out, "log.jsonl"), enabled=args.main)
    recipe_name = args.recipe + ("_no_neg" if args.no_negatives else "")
    rpn_seconds = 0.0

    # the training set of the recipe
    if args.recipe == "single":
        dataset = LevelImages(train, single_level(s), ranges=False, seed=args.seed)
    elif args.recipe == "multiscale":
        dataset = LevelImages(train, scaled_levels(SNIP_LEVELS, s), ranges=False, seed=args.seed)
    elif args.recipe == "snip":
        dataset = LevelImages(train, scaled_levels(SNIP_LEVELS, s), ranges=True, snip_chip=SNIP_CHIP * s, seed=args.seed)
    else:
        gen = ChipGenerator(levels=scaled_levels(SNIPER_LEVELS, s), chip_size=round(SNIPER_CHIP * s),
                            stride=max(1, round(SNIPER_STRIDE * s)))
        proposals = None
        if not args.no_negatives:
            path = os.path.join(args.out, "proposals.pt")
            if os.path.exists(path):
                proposals = torch.load(path, weights_only=True)
            else:  # SNIPER's recipe: a short RPN-only run on positive chips, proposals at the test scales
                pos = ChipDataset(train, gen, seed=args.seed)
                loader, sampler = loader_for(args, pos)
                detector = build_model(args.backbone, len(train.label_to_category), args.pretrained).to(args.dist.device)
                rpn_model = args.dist.wrap(RPNOnly(detector), find_unused_parameters=True)  # the RoI heads idle
                opt, sched = make_optimizer(args, rpn_model, len(loader), args.rpn_epochs)
                args.train_seconds = args.train_items = 0
                _, rpn_seconds = train_epochs(args, rpn_model, loader, sampler, pos, opt, sched, 0, args.rpn_epochs,
                                              log, "rpn", rpn_only=True)
                proposals = extract_proposals(detector, train, scaled_levels(SNIPER_LEVELS, s), args.dist.device,
                                              args.proposals_per_scale, not args.main)
                if args.main:
                    torch.save(proposals, path)
                del rpn_model, detector
        dataset = ChipDataset(train, gen, proposals=proposals, seed=args.seed)

    loader, sampler = loader_for(args, dataset)
    model = args.dist.wrap(model)
    optimizer, scheduler = make_optimizer(args, model, len(loader) if args.max_iters is None
                                          else min(len(loader), args.max_iters), args.epochs)
    start_epoch, args.train_seconds, args.train_items = 0, 0.0, 0
    if args.resume:
        path = os.path.join(args.out, "checkpoint.pt") if args.resume == "auto" else args.resume
        state = common.load_checkpoint(path, model=model.module if hasattr(model, "module") else model,
                                       optimizer=optimizer, scheduler=scheduler, map_location=args.dist.device)
        if state["extra"].get("recipe", args.recipe) != args.recipe:
            common.fail(f"--resume: {path} was trained with --recipe {state['extra']['recipe']}, not {args.recipe}")
        start_epoch = state["epoch"]
        args.train_seconds = state["extra"].get("train_seconds", 0.0)
        args.train_items = state["extra"].get("train_items", 0)
        if args.main:
            print(f"resumed from {path} at epoch {start_epoch}", flush=True)
    if args.main:
        print(f"recipe {recipe_name}: {len(train)} training images -> {len(dataset)} training inputs per epoch "
              f"({dataset.__class__.__name__}), {len(val)} validation images", flush=True)
    items, seconds = train_epochs(args, model, loader, sampler, dataset, optimizer, scheduler, start_epoch,
                                  args.epochs, log, "train")
    items += args.train_items
    seconds += args.train_seconds

    result = {}
    if args.main:
        stats, infer = evaluate(args, model, val, test_levels)
        pixels = _pixels_per_epoch(dataset)
        result = {
            "recipe": recipe_name, "seed": args.seed, "epochs": args.epochs, "backbone": args.backbone,
            "size_scale": s, "train_images": len(train), "val_images": len(val),
            "inputs_per_epoch": len(dataset),
            "train_pixels_per_image": pixels / len(train),
            "train_inputs_per_s": items / seconds if seconds > 0 else None,
            "train_seconds": seconds, "rpn_seconds": rpn_seconds,
            "inference_s_per_image": infer,
            "coco": {k: v for k, v in stats.items() if k != "per_class"},
            "device": str(args.dist.device), "threads": torch.get_num_threads(),
        }
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(result, f, indent=1)
        c = result["coco"]
        print(f"{recipe_name}: AP {c['AP']:.3f} AP50 {c['AP50']:.3f} APs {c['APs']:.3f} APm {c['APm']:.3f} "
              f"APl {c['APl']:.3f} | ARs {c['ARs']:.3f} ARm {c['ARm']:.3f} ARl {c['ARl']:.3f} | "
              f"{result['train_pixels_per_image'] / 1e3:.0f}k px/image, {infer * 1e3:.0f} ms/image inference", flush=True)
    args.dist.close()
    return result


def _pixels_per_epoch(dataset) -> float:
    if isinstance(dataset, ChipDataset):
        return float(len(dataset)) * dataset.generator.chip_size ** 2
    return dataset.pixels


if __name__ == "__main__":
    main()
