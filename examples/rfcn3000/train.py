"""R-FCN-3000 end to end (thesis ch. 4): super-classes, training, inference, new classes.

The steps, each from scalekit's public API:

1. **Super-classes** (§4.4.2): a small classification network is trained on
   the classification split (object crops with class labels, no boxes; the
   thesis uses ImageNet features), the mean feature of each class is taken
   (:func:`scalekit.heads.class_mean_features`) and K-means groups the
   classes (:func:`scalekit.heads.discover_superclasses`). How well clusters
   recover the shape families is printed (purity, adjusted Rand index).
2. **The detector** (§4.4.3): a backbone + torchvision's RPN +
   :class:`scalekit.heads.DecoupledHead` (``--superclasses K``
   position-sensitive super-class filters, class-agnostic boxes, a
   fine-grained branch trained on positive RoIs), trained with OHEM
   (:func:`scalekit.detection.faster_rcnn_with_head`); ``--head rfcn`` puts
   the class-specific :class:`scalekit.heads.RFCNHead` on the same backbone,
   proposals and schedule (Table 4.6); ``--deformable`` is the deformable
   R-FCN variant (deformable PSRoI pooling; deformable conv in the ResNet's
   last stage).
3. **Inference**: ``p(super-class) x p(class)``, NMS per super-class
   (:func:`scalekit.ops.grouped_nms`), COCO mAP on every class; class-agnostic
   objectness AP on all objects and on held-out classes (Table 4.7).
4. **New classes without boxes** (§4.6.3, Table 4.2): each held-out class is
   added with :meth:`DecoupledHead.add_class` from its classification crops
   alone, and its detection AP is reported.

Without ``--data`` a seeded synthetic set is generated on first use
(:func:`scalekit.datasets.synthetic.make_synthetic_fine_coco`): 5 shape families x 42
classes, 2 per family held out (200 classes with boxes, 10 without).
``--data DIR`` reads any COCO-format set: ``DIR/train`` and ``DIR/val`` with
``images/`` and ``annotations.json``, optionally ``DIR/classification`` with
``images/`` and ``labels.json`` (``{"images": [{"file_name", "category_id"}]}``;
without it, ground-truth crops of the training images are the classification
data); ``--held-out`` names the category ids trained without boxes.

Outputs in ``--out``: ``results.json``, ``log.jsonl``, ``loss.png``,
``checkpoint.pt`` (each epoch; ``--resume`` continues from it).

    python examples/rfcn3000/train.py --out runs/rfcn3000
    python examples/rfcn3000/train.py --head rfcn --out runs/rfcn
    torchrun --nproc_per_node 2 examples/rfcn3000/train.py --data /imagenet-coco --backbone resnet18 \\
        --held-out 12 57 301 --device cuda --amp
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

from scalekit.boxes import decode_boxes  # noqa: E402
from scalekit.datasets import CocoDetection  # noqa: E402
from scalekit.datasets.synthetic import make_synthetic_fine_classification, make_synthetic_fine_coco  # noqa: E402
from scalekit.detection import deformable_resnet, faster_rcnn_with_head, honour_ignore_boxes  # noqa: E402
from scalekit.evaluation import coco_evaluate, to_coco_results  # noqa: E402
from scalekit.heads import DecoupledHead, RFCNHead, class_mean_features, discover_superclasses  # noqa: E402
from scalekit.ops import nms  # noqa: E402

# Thesis values (§4.5.2 unless said otherwise)
THESIS_SIZE = (375, 500)  # shorter side >= 375, longer side <= 500
THESIS_ANCHORS = (64, 128, 256)  # with aspect ratios 1:2, 1:1, 2:1
LR_DROP_AT = 5.33 / 7  # the learning rate drops 10x after 5.33 of 7 epochs
CLASS_LOSS_WEIGHT = 0.05  # the fine-grained loss's weight (§4.4.5)
OHEM_ROIS = 128  # hard RoIs per image (R-FCN)
IMAGE_MEAN, IMAGE_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's detector normalisation
POOL_SIZE = 7  # P x P position-sensitive bins
NMS_THRESHOLD = 0.3  # R-FCN's test NMS


# ----------------------------------------------------------------------------- data


class Crops(Dataset):
    """Classification data: ``(image [3, S, S] float, label)`` in memory (uint8)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i].float() / 255, self.labels[i]


def read_crops(image_dir: str, labels_json: str, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All crops of a classification split, resized to ``crop`` x ``crop``: uint8 images and category ids."""
    from PIL import Image

    with open(labels_json) as f:
        records = json.load(f).get("images", [])
    images, cats = [], []
    for r in records:
        path = os.path.join(image_dir, r["file_name"])
        if not os.path.isfile(path):
            common.fail(f"classification split: no such image {path} (named in {labels_json})")
        with Image.open(path) as im:
            im = im.convert("RGB").resize((crop, crop))
            images.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1))
        cats.append(int(r["category_id"]))
    if not images:
        common.fail(f"classification split {labels_json} has no images")
    return torch.stack(images), torch.tensor(cats)


def crops_from_boxes(data: CocoDetection, crop: int, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth boxes of a detection set cut out as classification crops (``--data`` without a split)."""
    rng = np.random.default_rng(seed)
    images, cats, count = [], [], {}
    for i in rng.permutation(len(data)).tolist():
        image, target = data[i]
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            cat = data.label_to_category[label]
            if count.get(cat, 0) >= per_class or box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            patch = F.interpolate(image[None, :, y1:y2, x1:x2], size=(crop, crop), mode="bilinear", align_corners=False)
            images.append((patch[0] * 255).round().clamp(0, 255).to(torch.uint8))
            cats.append(cat)
            count[cat] = count.get(cat, 0) + 1
    if not images:
        common.fail("--data: the training split has no boxes to cut classification crops from")
    return torch.stack(images), torch.tensor(cats)


class DetectionSplit(Dataset):
    """A CocoDetection whose labels are the detector's (known classes ``1..C``);
    objects of other classes become ignore boxes (neither object nor background)."""

    def __init__(self, data: CocoDetection, category_to_label: dict):
        self.data = data
        lookup = torch.zeros(max(data.label_to_category) + 1, dtype=torch.int64)
        for label, cat in data.label_to_category.items():
            lookup[label] = category_to_label.get(cat, 0)
        self.lookup = lookup

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        image, t = self.data[i]
        labels = self.lookup[t["labels"]]
        known = labels > 0
        ignore = torch.cat([t["ignore_boxes"].reshape(-1, 4), t["boxes"][~known]])
        return image, {"boxes": t["boxes"][known], "labels": labels[known], "ignore_boxes": ignore,
                       "image_id": t["image_id"]}


def collate(batch):
    return tuple(zip(*batch))


def synthetic_paths(args) -> dict:
    """Generate (on first use) and name the synthetic splits."""
    root = args.synthetic_dir or os.path.join(args.out, "data")
    tax = dict(num_families=args.families, classes_per_family=args.classes_per_family, taxonomy_seed=0)
    c = args.families * args.classes_per_family
    held = [f * args.classes_per_family + j + 1 for f in range(args.families)
            for j in range(args.classes_per_family - args.held_out_per_family, args.classes_per_family)]
    known = [k for k in range(1, c + 1) if k not in held]
    if args.train_classes:
        if not 1 <= args.train_classes <= len(known):
            common.fail(f"--train-classes must lie in [1, {len(known)}], got {args.train_classes}")
        # spread over the families: every len(known)/n-th known class
        known = [known[int(i * len(known) / args.train_classes)] for i in range(args.train_classes)]
    size = (args.image_size, args.image_size)
    n_train, n_val = args.synthetic
    splits = {
        "train": (f"train_{n_train}_c{len(known)}", lambda d: make_synthetic_fine_coco(
            d, n_train, 1000, classes=known, image_size=size, **tax)),
        "val": (f"val_{n_val}", lambda d: make_synthetic_fine_coco(d, n_val, 2000, image_size=size, **tax)),
        "classification": (f"cls_{args.per_class}", lambda d: make_synthetic_fine_classification(
            d, args.per_class, 3000, crop_size=args.crop_size, **tax)),
    }
    paths = {}
    for name, (folder, make) in splits.items():
        d = os.path.join(root, f"{args.families}x{args.classes_per_family}", folder)
        ann = os.path.join(d, "labels.json" if name == "classification" else "annotations.json")
        if not os.path.exists(ann) and args.dist.main:
            print(f"generating the synthetic {name} split into {d} ...", flush=True)
            make(d)
        paths[name] = (os.path.join(d, "images"), ann)
    args.dist.barrier()
    return {"paths": paths, "held_out": held, "known": known}


def load_data(args) -> dict:
    """Detection splits, classification crops, known and held-out category ids."""
    if args.data is None:
        spec = synthetic_paths(args)
        paths, held, known = spec["paths"], spec["held_out"], spec["known"]
    else:
        paths = {sp: (os.path.join(args.data, sp, "images"), os.path.join(args.data, sp, "annotations.json"))
                 for sp in ("train", "val")}
        cls = os.path.join(args.data, "classification", "labels.json")
        if os.path.exists(cls):
            paths["classification"] = (os.path.join(args.data, "classification", "images"), cls)
        held, known = list(args.held_out or []), None
    out = {}
    for name in ("train", "val"):
        try:
            out[name] = CocoDetection(*paths[name])
        except (FileNotFoundError, ValueError) as exc:
            common.fail(f"--data ({name}): {exc}")
        if len(out[name]) == 0:
            common.fail(f"--data ({name}): {paths[name][1]} has no images")
    cats = sorted(out["val"].label_to_category.values())
    if sorted(out["train"].label_to_category.values()) != cats:
        common.fail("--data: train and val list different categories")
    unknown = [c for c in held if c not in cats]
    if unknown:
        common.fail(f"--held-out: category ids {unknown} are not in the data's categories")
    if known is None:
        known = [c for c in cats if c not in held]
        if args.train_classes:
            known = known[: args.train_classes]
    if not known:
        common.fail("--held-out leaves no class to train with boxes")
    out["known"], out["held_out"], out["categories"] = known, held, cats
    if "classification" in paths:
        out["crops"] = read_crops(*paths["classification"], args.crop_size)
    else:
        out["crops"] = crops_from_boxes(out["train"], args.crop_size, args.per_class, args.seed)
    gt = out["val"].coco.dataset
    out["families"] = {c["id"]: c.get("supercategory", "") for c in gt["categories"]}
    return out


# ----------------------------------------------------------------------------- super-classes


class ClassifierNet(torch.nn.Module):
    """The classification network of step 1: the detector's backbone, global average pooling, a linear layer.

    Trained on the classification split, it plays ImageNet's two parts in the
    thesis: its class-mean features are clustered into super-classes, and its
    backbone initialises the detector's (``--no-init-from-classifier`` to
    start the detector from scratch). Inputs are normalised as the detector's.
    """

    def __init__(self, backbone: torch.nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(3, 1, 1))
        self.fc = torch.nn.Linear(backbone.out_channels, num_classes)

    def features(self, x):
        f = self.backbone((x - self.mean) / self.std)
        f = next(iter(f.values())) if isinstance(f, dict) else f
        return f.mean((2, 3))

    def forward(self, x):
        return self.fc(self.features(x))


def adjusted_rand_index(a, b) -> float:
    """Agreement of two clusterings, 1 = identical, ~0 = chance (Hubert & Arabie 1985)."""
    a, b = np.unique(np.asarray(a), return_inverse=True)[1], np.unique(np.asarray(b), return_inverse=True)[1]
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)

    def pairs(x):
        return (x * (x - 1) / 2).sum()

    n = len(a)
    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2)
    top = (rows + cols) / 2
    return float((index - expected) / (top - expected)) if top != expected else 1.0


def purity(clusters, families) -> float:
    """Fraction of classes in their cluster's most common family."""
    clusters, families = np.asarray(clusters), np.asarray(families)
    hits = sum(np.unique(families[clusters == k], return_counts=True)[1].max() for k in np.unique(clusters))
    return float(hits / len(clusters))


def superclasses(args, data, device) -> dict:
    """Step 1: class features from a classification network, then K-means."""
    images, cats = data["crops"]
    known = data["known"]
    index = {c: i for i, c in enumerate(known)}
    keep = torch.tensor([int(c) in index for c in cats.tolist()])
    if not keep.any():
        common.fail("the classification split has no crops of the classes trained with boxes")
    labels = torch.tensor([index[int(c)] for c in cats[keep].tolist()])
    missing = sorted(set(range(len(known))) - set(labels.tolist()))
    if missing:
        common.fail(f"the classification split has no crops of categories {[known[m] for m in missing[:10]]}")
    net = ClassifierNet(make_backbone(args.backbone, args.deformable, args.pretrained), len(known)).to(device)
    t0 = time.perf_counter()
    cache = None
    if args.classifier_cache:
        tag = f"{args.backbone}{'_deform' if args.deformable else ''}_{len(known)}c{sum(known) % 9973}"
        cache = os.path.join(args.classifier_cache, f"classifier_{tag}_s{args.seed}_e{args.cls_epochs}.pt")
    if cache and os.path.exists(cache):
        net.load_state_dict(torch.load(cache, map_location=device, weights_only=True))
    else:
        loader = DataLoader(Crops(images[keep], labels), batch_size=64, shuffle=True,
                            generator=torch.Generator().manual_seed(args.seed))
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        net.train()
        for epoch in range(args.cls_epochs):
            bar = common.Progress(loader, desc=f"classifier {epoch + 1}/{args.cls_epochs}", quiet=not args.dist.main)
            for x, y in bar:
                loss = F.cross_entropy(net(x.to(device)), y.to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.set(loss=loss.item())
        if cache and args.dist.main:
            os.makedirs(args.classifier_cache, exist_ok=True)
            torch.save(net.state_dict(), cache + ".tmp")
            os.replace(cache + ".tmp", cache)
    net.eval()
    with torch.no_grad():
        correct = sum((net(x.to(device)).argmax(1).cpu() == y).sum().item() for x, y in
                      DataLoader(Crops(images[keep], labels), batch_size=256))
    feats = class_mean_features(net.features, DataLoader(Crops(images[keep], labels), batch_size=256),
                                len(known), device=device)
    fam_names = [data["families"].get(c, "") for c in known]
    families = np.unique(fam_names, return_inverse=True)[1]
    n_fam = int(families.max()) + 1
    found = discover_superclasses(feats, n_fam, seed=args.seed).numpy()
    chosen = discover_superclasses(feats, min(args.superclasses, len(known)), seed=args.seed)
    out = {"classifier_train_accuracy": correct / int(keep.sum()), "families": n_fam,
           "recovery_purity": purity(found, families), "recovery_ari": adjusted_rand_index(found, families),
           "k": int(chosen.max()) + 1, "seconds": time.perf_counter() - t0, "superclass_of": chosen,
           "backbone": net.backbone.state_dict()}
    if args.dist.main:
        print(f"super-classes: classifier train accuracy {out['classifier_train_accuracy']:.3f}; K-means with "
              f"K = {n_fam} (the number of families) recovers the families with purity {out['recovery_purity']:.3f}, "
              f"adjusted Rand index {out['recovery_ari']:.3f}; the detector uses K = {out['k']}", flush=True)
    return out


# ----------------------------------------------------------------------------- model


class TinyBackbone(torch.nn.Module):
    """Three conv stages to stride 8 and 96 channels: a detector that trains in minutes on a CPU.

    BatchNorm, not GroupNorm: GroupNorm normalises each image's channel groups
    on their own and so removes the absolute colour that tells many of the
    synthetic classes apart (with it, neither the classifier nor the
    fine-grained branch learned anything in a few epochs).
    """

    def __init__(self, widths=(24, 48, 96), out_channels: int = 96):
        super().__init__()
        layers, c = [], 3
        for w in widths:
            layers += [torch.nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(w),
                       torch.nn.ReLU(inplace=True), torch.nn.Conv2d(w, w, 3, padding=1, bias=False),
                       torch.nn.BatchNorm2d(w), torch.nn.ReLU(inplace=True)]
            c = w
        layers += [torch.nn.Conv2d(c, out_channels, 3, padding=1), torch.nn.ReLU(inplace=True)]
        self.body = torch.nn.Sequential(*layers)
        self.out_channels, self.stride = out_channels, 8

    def forward(self, x):
        return self.body(x)


def make_backbone(name: str, deformable: bool, pretrained: bool):
    if name == "tiny":
        if pretrained:
            common.fail("--pretrained: the tiny backbone has no pretrained weights; use --backbone resnet18")
        return TinyBackbone()
    import torchvision

    try:
        resnet = getattr(torchvision.models, name)(weights="DEFAULT" if pretrained else None)
    except Exception as exc:  # no network: weights cannot be downloaded
        common.fail(f"--pretrained: could not load {name}'s ImageNet weights ({exc.__class__.__name__}: {exc})")
    if deformable:
        deformable_resnet(resnet, ("layer3",))  # the last stage kept (conv4): deformable, as D-R-FCN's conv5
    body = torch.nn.Sequential(*list(resnet.children())[:-3])  # conv4: stride 16
    last = resnet.layer3[-1]
    body.out_channels = (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels
    body.stride = 16
    return body


def build_model(args, num_classes: int, superclass_of=None):
    """Backbone + torchvision RPN + the chosen head, as one torchvision ``FasterRCNN``."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    backbone = make_backbone(args.backbone, args.deformable, args.pretrained)
    c, scale = backbone.out_channels, 1 / backbone.stride
    if args.head == "decoupled":
        head = DecoupledHead(c, num_classes, superclass_of, pool_size=args.pool_size, spatial_scale=scale,
                             mid_channels=args.width, fine_channels=args.width, deformable=args.deformable,
                             class_loss_weight=args.class_loss_weight)
    else:
        head = RFCNHead(c, num_classes, pool_size=args.pool_size, spatial_scale=scale, mid_channels=args.width,
                        deformable=args.deformable)
    anchors = AnchorGenerator((tuple(args.anchors),), ((0.5, 1.0, 2.0),))
    model = faster_rcnn_with_head(backbone, head, ohem=args.ohem or None, min_size=args.min_size,
                                  max_size=args.max_size, rpn_anchor_generator=anchors,
                                  rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=args.proposals,
                                  rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=args.proposals)
    model.roi_heads.postprocess_kwargs.update(score_threshold=args.score_threshold, nms_threshold=NMS_THRESHOLD)
    return honour_ignore_boxes(model)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def objectness_detections(model, images):
    """Class-agnostic detections: ``1 - p(background)`` of the head, its boxes, NMS at 0.3."""
    original = [tuple(im.shape[-2:]) for im in images]
    batch, _ = model.transform(images)
    feats = model.backbone(batch.tensors)
    feats = {"0": feats} if isinstance(feats, torch.Tensor) else feats
    proposals, _ = model.rpn(batch, feats)
    head = model.roi_heads.head
    out = head(next(iter(feats.values())), proposals)
    logits = out["super_logits"] if "super_logits" in out else out["cls_logits"]
    score = 1 - logits.float().softmax(1)[:, 0]
    boxes = decode_boxes(torch.cat(proposals), out["box_deltas"].float())
    dets, start = [], 0
    for p, (h, w) in zip(proposals, batch.image_sizes):
        b, s = boxes[start:start + len(p)], score[start:start + len(p)]
        start += len(p)
        b = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)], 1)
        keep = nms(b, s, NMS_THRESHOLD)[:100]
        dets.append({"boxes": b[keep], "scores": s[keep], "labels": torch.ones_like(keep)})
    return model.transform.postprocess(dets, batch.image_sizes, original)


def ground_truth(coco: dict, objects: set | None, *, agnostic: bool = False) -> dict:
    """The validation GT with only the categories in ``objects`` as objects; every
    other object becomes a crowd region (detections on it count neither way).
    ``agnostic``: one category, "object"."""
    anns = []
    for a in coco["annotations"]:
        a = dict(a)
        if objects is not None and a["category_id"] not in objects:
            a["iscrowd"] = 1
        if agnostic:
            a["category_id"] = 1
        anns.append(a)
    cats = ([{"id": 1, "name": "object"}] if agnostic else
            [c for c in coco["categories"] if objects is None or c["id"] in objects])
    return {"images": coco["images"], "annotations": anns, "categories": cats}


def evaluate(model, data, args, label_to_category, objects, *, objectness_sets=None) -> dict:
    """COCO AP of the detector on the classes in ``objects`` (others: crowd), speed, and
    class-agnostic objectness AP on each set of ``objectness_sets`` ({name: categories})."""
    model.eval()
    val = data["val"]
    loader = DataLoader(val, batch_size=1, collate_fn=collate, num_workers=args.workers)
    predictions, agnostic = {}, {}
    head_time = [0.0]

    def pre(module, inputs):
        head_time.append(-time.perf_counter())

    def post(module, inputs, output):
        head_time[-1] += time.perf_counter()

    hooks = [model.roi_heads.register_forward_pre_hook(pre), model.roi_heads.register_forward_hook(post)]
    device = args.dist.device
    start, n = time.perf_counter(), 0
    with torch.no_grad():
        for images, targets in common.Progress(loader, desc="inference", quiet=not args.dist.main):
            images = [im.to(device) for im in images]
            with common.autocast(device, args.amp):
                dets = model(images)
            for t, d in zip(targets, dets):
                predictions[t["image_id"]] = {k: v.float().cpu() for k, v in d.items()}
            n += len(images)
    seconds = time.perf_counter() - start
    for h in hooks:
        h.remove()
    if objectness_sets:
        with torch.no_grad():
            for images, targets in loader:
                with common.autocast(device, args.amp):
                    dets = objectness_detections(model, [im.to(device) for im in images])
                for t, d in zip(targets, dets):
                    agnostic[t["image_id"]] = {k: v.float().cpu() for k, v in d.items()}
    gt = val.coco.dataset
    results = to_coco_results(predictions, label_to_category)
    # the ground truth keeps only the categories in objects: leave the others' predictions out
    out = {"coco": coco_evaluate(results, ground_truth(gt, set(objects)), unknown_categories="ignore"),
           "images_per_s": n / seconds, "head_ms_per_image": 1000 * sum(head_time[1:]) / max(n, 1)}
    for name, cats in (objectness_sets or {}).items():
        r = coco_evaluate(agnostic, ground_truth(gt, set(cats), agnostic=True))
        out[f"objectness_{name}"] = {k: r[k] for k in ("AP", "AP50", "AR100")}
    return out


# ----------------------------------------------------------------------------- new classes


@torch.no_grad()
def crop_features(model, crops: torch.Tensor, device) -> torch.Tensor:
    """The head's image-level features of classification crops (normalised as the detector's inputs)."""
    head = model.roi_heads.head
    feats = []
    for chunk in crops.split(128):
        x = model.transform.normalize(chunk.to(device).float() / 255)
        f = model.backbone(x)
        f = next(iter(f.values())) if isinstance(f, dict) else f
        feats.append(head.image_features(f).float().cpu())
    return torch.cat(feats)


def add_held_out_classes(model, data, args, label_to_category: dict) -> list[int]:
    """Step 4: one classifier row per held-out class, fitted on its crops alone (no box)."""
    head = model.roi_heads.head
    if not hasattr(head, "add_class"):
        return []
    images, cats = data["crops"]
    device = args.dist.device
    known = set(data["known"])
    g = torch.Generator().manual_seed(args.seed)
    known_idx = torch.tensor([i for i, c in enumerate(cats.tolist()) if c in known])
    negatives = crop_features(model, images[known_idx[torch.randperm(len(known_idx), generator=g)[:2000]]], device)
    added = []
    for cat in data["held_out"]:
        idx = (cats == cat).nonzero().flatten()
        if len(idx) == 0:
            print(f"held-out category {cat}: no classification crops, not added", flush=True)
            continue
        label = head.add_class(crop_features(model, images[idx], device).to(device), negatives.to(device))
        label_to_category[label] = cat
        added.append(cat)
    return added


# ----------------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--out", default="runs/rfcn3000", help="output folder (default: %(default)s)")
    a("--data", help="COCO-format data: DIR/{train,val}/{images,annotations.json} [+ DIR/classification]")
    a("--held-out", type=int, nargs="*", help="--data: category ids trained without boxes, added by add_class")
    a("--head", choices=("decoupled", "rfcn"), default="decoupled",
      help="R-FCN-3000's decoupled head or the class-specific R-FCN head (default: %(default)s)")
    a("--superclasses", type=int, default=1, help="K super-classes (1: objectness; default: %(default)s)")
    a("--deformable", action="store_true", help="deformable R-FCN: deformable PSRoI pooling (+ conv with a ResNet)")
    a("--backbone", default="tiny", help="tiny, or a torchvision ResNet (resnet18, resnet50, ...) cut at conv4")
    a("--pretrained", action="store_true", help="ImageNet weights for a ResNet backbone (needs them downloadable)")
    a("--epochs", type=int, default=3, help="detector epochs (default: %(default)s; the thesis trains 7)")
    a("--batch-size", type=int, default=4, help="images per step per process (default: %(default)s)")
    a("--lr", type=float, default=0.04, help="SGD learning rate (default: %(default)s)")
    a("--class-loss-weight", type=float, default=CLASS_LOSS_WEIGHT,
      help="weight of the fine-grained loss (default: %(default)s, the thesis' §4.4.5)")
    a("--ohem", type=int, default=OHEM_ROIS, help="OHEM: hard RoIs per image, 0 = all (default: %(default)s)")
    a("--proposals", type=int, default=300, help="RPN proposals per image (default: %(default)s)")
    a("--pool-size", type=int, default=POOL_SIZE, help="P (default: %(default)s, the thesis')")
    a("--width", type=int, default=128, help="width of the head's branches (thesis: 1024; default: %(default)s)")
    a("--min-size", type=int, help="detector input shorter side (default: the synthetic size, 375 with --data)")
    a("--max-size", type=int, help="detector input longer side (default: the synthetic size, 500 with --data)")
    a("--anchors", type=int, nargs="+", help="anchor sizes (default: 16 32 64 synthetic, 64 128 256 with --data)")
    a("--score-threshold", type=float, default=0.001, help="detections below are dropped (default: %(default)s)")
    a("--cls-epochs", type=int, default=6, help="classification-network epochs (default: %(default)s)")
    a("--no-init-from-classifier", action="store_true", help="do not start the detector's backbone from the "
      "classification network's (step 1)")
    a("--classifier-cache", help="folder to keep and reuse trained classification networks in")
    a("--crop-size", type=int, default=40, help="classification crops' side (default: %(default)s)")
    a("--families", type=int, default=5, help="synthetic: shape families (default: %(default)s)")
    a("--classes-per-family", type=int, default=42, help="synthetic: classes per family (default: %(default)s)")
    a("--held-out-per-family", type=int, default=2, help="synthetic: held-out classes per family (default: %(default)s)")
    a("--train-classes", type=int, default=0, help="train with boxes on only this many classes (0: all known)")
    a("--synthetic", type=int, nargs=2, default=(600, 100), metavar=("TRAIN", "VAL"),
      help="synthetic: images per split (default: %(default)s)")
    a("--per-class", type=int, default=12, help="classification crops per class (default: %(default)s)")
    a("--image-size", type=int, default=128, help="synthetic image side (default: %(default)s)")
    a("--synthetic-dir", help="where to generate the synthetic data (default: OUT/data)")
    a("--no-add-classes", action="store_true", help="skip step 4")
    a("--data-only", action="store_true", help="generate the synthetic data and stop")
    a("--seed", type=int, default=0)
    a("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    a("--amp", action="store_true", help="mixed precision")
    a("--workers", type=int, default=0, help="data-loading processes (default: %(default)s)")
    a("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    a("--max-steps", type=int, default=0, help="stop each epoch after this many steps (smoke tests)")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "proposals", "pool_size", "width", "superclasses", "cls_epochs",
                 "crop_size", "per_class", "image_size", "families", "classes_per_family"):
        if getattr(args, name) < 1:
            common.fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 <= args.held_out_per_family < args.classes_per_family:
        common.fail(f"--held-out-per-family must lie in [0, {args.classes_per_family - 1}]")
    if args.data is not None and not os.path.isdir(args.data):
        common.fail(f"--data: no such folder {args.data}")
    synthetic = args.data is None
    args.min_size = args.min_size or (args.image_size if synthetic else THESIS_SIZE[0])
    args.max_size = args.max_size or (args.image_size if synthetic else THESIS_SIZE[1])
    args.anchors = args.anchors or ([16, 32, 64] if synthetic else list(THESIS_ANCHORS))
    return args


def main(argv=None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.dist = common.Distributed(args.device)
    device = args.dist.device
    common.seed_everything(args.seed)
    os.makedirs(args.out, exist_ok=True)
    if args.data_only:
        if args.data is None:
            synthetic_paths(args)
        return {}
    data = load_data(args)
    known = data["known"]
    category_to_label = {c: i + 1 for i, c in enumerate(known)}
    label_to_category = {i + 1: c for i, c in enumerate(known)}

    sc = superclasses(args, data, device)
    model = build_model(args, len(known), sc["superclass_of"] if args.head == "decoupled" else None).to(device)
    if not args.no_init_from_classifier:
        model.backbone.load_state_dict(sc["backbone"])
    train = DetectionSplit(data["train"], category_to_label)
    sampler = DistributedSampler(train, seed=args.seed) if args.dist.world_size > 1 else None
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                        collate_fn=collate, num_workers=args.workers, drop_last=True,
                        generator=torch.Generator().manual_seed(args.seed))
    if len(loader) == 0:
        common.fail(f"--batch-size {args.batch_size} is larger than the training split ({len(train)} images)")
    steps_per_epoch = min(len(loader), args.max_steps or len(loader))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    warmup = min(100, steps_per_epoch)
    drop = int(LR_DROP_AT * args.epochs * steps_per_epoch)

    def lr_at(step):
        return (0.1 + 0.9 * min(1.0, step / warmup)) * (0.1 if step >= drop else 1.0)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ckpt = os.path.join(args.out, "checkpoint.pt")
    log = common.JsonlLog(os.path.join(args.out, "log.jsonl"), enabled=args.dist.main)
    start_epoch, train_seconds = 0, 0.0
    if args.resume:
        state = common.load_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched, map_location=device)
        start_epoch, train_seconds = state["epoch"] + 1, state["extra"].get("train_seconds", 0.0)
        if args.dist.main:
            print(f"resumed from {ckpt} after epoch {state['epoch'] + 1}", flush=True)
    net = args.dist.wrap(model)
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        t0 = time.perf_counter()
        bar = common.Progress(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}",
                              quiet=not args.dist.main)
        for i, (images, targets) in enumerate(bar):
            if i >= steps_per_epoch:
                break
            images = [im.to(device) for im in images]
            targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            with common.autocast(device, args.amp):
                losses = net(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                common.fail(f"the loss became {loss.item()} at step {step}; lower --lr")
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            step += 1
            values = {k: v.item() for k, v in losses.items()}
            bar.set(loss=loss.item())
            if step % 10 == 0 or i == steps_per_epoch - 1:
                log.write(epoch=epoch, iter=step, lr=sched.get_last_lr()[0], loss=loss.item(), **values)
        train_seconds += time.perf_counter() - t0
        if args.dist.main:
            common.save_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched, epoch=epoch,
                                   train_seconds=train_seconds)
            common.plot_curves(log.path, os.path.join(args.out, "loss.png"))
        args.dist.barrier()
    if not args.dist.main:
        args.dist.close()
        return {}

    results = {"args": {k: v for k, v in vars(args).items() if k != "dist"}, "train_seconds": train_seconds,
               "num_known": len(known), "num_held_out": len(data["held_out"]),
               "superclasses": {k: v for k, v in sc.items() if k not in ("superclass_of", "backbone")}}
    sets = {"all": data["categories"], "held_out": data["held_out"]} if data["held_out"] else {"all": data["categories"]}
    known_eval = evaluate(model, data, args, label_to_category, known, objectness_sets=sets)
    results["known"] = known_eval
    print(f"known classes ({len(known)}): AP {known_eval['coco']['AP']:.4f} AP50 {known_eval['coco']['AP50']:.4f}; "
          f"{known_eval['images_per_s']:.1f} images/s, head {known_eval['head_ms_per_image']:.1f} ms/image", flush=True)
    for name in sets:
        o = known_eval[f"objectness_{name}"]
        print(f"objectness on {name} objects: AP {o['AP']:.4f} AP50 {o['AP50']:.4f}", flush=True)
    if data["held_out"] and not args.no_add_classes and args.head == "decoupled":
        t0 = time.perf_counter()
        added = add_held_out_classes(model, data, args, label_to_category)
        results["add_class_seconds"] = time.perf_counter() - t0
        full = evaluate(model, data, args, label_to_category, data["categories"])
        per_class = full["coco"]["per_class"]
        held = [per_class[c] for c in added if per_class.get(c, -1) >= 0]
        results["all"] = full
        results["added"] = added
        results["held_out_AP"] = float(np.mean(held)) if held else -1.0
        results["held_out_per_class_AP"] = {str(c): per_class.get(c, -1.0) for c in added}
        print(f"add_class: {len(added)} held-out classes added from classification crops alone "
              f"({results['add_class_seconds']:.1f} s); their detection AP {results['held_out_AP']:.4f}; "
              f"all {len(data['categories'])} classes: AP {full['coco']['AP']:.4f}", flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)
    args.dist.close()
    return results


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
