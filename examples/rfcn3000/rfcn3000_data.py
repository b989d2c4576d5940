"""The plumbing of examples/rfcn3000/train.py that is not a method step: data
(the synthetic or COCO-format splits, classification crops), the small
classification network of step 1, the backbones, and COCO evaluation with
objects of chosen classes only. Every method step is a scalekit call in
train.py."""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

from scalekit.datasets import CocoDetection, crops_from_boxes, read_classification  # noqa: E402
from scalekit.datasets.synthetic import make_synthetic_fine_classification, make_synthetic_fine_coco  # noqa: E402
from scalekit.detection import objectness_detections  # noqa: E402
from scalekit.evaluation import coco_evaluate, to_coco_results  # noqa: E402

IMAGE_MEAN, IMAGE_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's detector normalisation

# ----------------------------------------------------------------------------- data


class Crops(Dataset):
    """Classification data: ``(image [3, S, S] float, label)`` in memory (uint8)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i].float() / 255, self.labels[i]


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


def train_loader(args, data, category_to_label: dict):
    """The detection training loader (known classes only; others are ignore boxes) and its
    distributed sampler (``None`` in one process)."""
    from torch.utils.data.distributed import DistributedSampler

    train = DetectionSplit(data["train"], category_to_label)
    sampler = DistributedSampler(train, seed=args.seed) if args.dist.world_size > 1 else None
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                        collate_fn=collate, num_workers=args.workers, drop_last=True,
                        generator=torch.Generator().manual_seed(args.seed))
    if len(loader) == 0:
        common.fail(f"--batch-size {args.batch_size} is larger than the training split ({len(train)} images)")
    return loader, sampler


def synthetic_paths(args) -> dict:
    """Generate (on first use) and name the synthetic splits."""
    root = args.synthetic_dir or os.path.join(args.out, "data")
    tax = dict(num_families=args.families, classes_per_family=args.classes_per_family, taxonomy_seed=0)
    c = args.families * args.classes_per_family
    held = [f * args.classes_per_family + j + 1 for f in range(args.families)
            for j in range(args.classes_per_family - args.held_out_per_family, args.classes_per_family)]
    known = [k for k in range(1, c + 1) if k not in held or args.box_held_out]  # OB: held-out classes with boxes
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


def classification_with_boxes(image_dir: str, labels_json: str, dist) -> CocoDetection:
    """A classification split whose images carry their object's box (``"bbox"`` per image record,
    as ImageNet's classification images do) as a COCO detection split: one object per image,
    thesis Table 4.2's training data. Written by the main process as ``detection.json`` beside
    ``labels_json`` (again whenever ``labels_json`` is newer)."""
    import json

    path = os.path.join(os.path.dirname(labels_json), "detection.json")
    if dist.main and (not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(labels_json)):
        with open(labels_json) as f:
            split = json.load(f)
        missing = [r.get("file_name") for r in split.get("images", []) if len(r.get("bbox") or []) != 4]
        if missing:
            common.fail(f"--train-on classification: {len(missing)} images of {labels_json} have no 'bbox' "
                        f"[x, y, w, h] (the first: {missing[0]}); this setting trains on their boxes (synthetic "
                        f"crops written before they carried boxes: delete {os.path.dirname(labels_json)} and "
                        "run again to regenerate them)")
        anns = [{"id": r["id"], "image_id": r["id"], "category_id": r["category_id"], "bbox": r["bbox"],
                 "area": r["bbox"][2] * r["bbox"][3], "iscrowd": 0} for r in split["images"]]
        images = [{k: r[k] for k in ("id", "file_name", "height", "width")} for r in split["images"]]
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": split["categories"]}, f)
        os.replace(tmp, path)
    dist.barrier()
    return CocoDetection(image_dir, path)


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
    if args.train_on == "classification":  # Table 4.2's setting: the detector learns from classification images
        if "classification" not in paths:
            common.fail("--train-on classification needs DIR/classification/labels.json with a 'bbox' per image")
        out["train"] = classification_with_boxes(*paths["classification"], args.dist)
    out["known"], out["held_out"], out["categories"] = known, held, cats
    try:
        out["crops"] = (read_classification(*paths["classification"], args.crop_size) if "classification" in paths
                        else crops_from_boxes(out["train"], args.crop_size, args.per_class, args.seed))
    except (FileNotFoundError, ValueError) as exc:
        common.fail(f"classification crops: {exc}")
    gt = out["val"].coco.dataset
    out["families"] = {c["id"]: c.get("supercategory", "") for c in gt["categories"]}
    return out


# ----------------------------------------------------------------------------- step 1: the classification network


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


def train_classifier(args, data, device) -> tuple[ClassifierNet, DataLoader, float]:
    """The classification network of step 1, trained on the crops of the known classes
    (or loaded from ``--classifier-cache``): the net, a loader of its crops, its train accuracy."""
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
    net = ClassifierNet(common.single_level_backbone(args.backbone, args.deformable, args.pretrained),
                        len(known)).to(device)
    def fit():
        loader = DataLoader(Crops(images[keep], labels), batch_size=64, shuffle=True,
                            generator=torch.Generator().manual_seed(args.seed))
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        net.train()
        for epoch in range(args.cls_epochs):
            bar = common.Progress(loader, desc=f"classifier {epoch + 1}/{args.cls_epochs}", quiet=not args.dist.main)
            for x, y in bar:
                bar.set(loss=common.optimizer_step(opt, F.cross_entropy(net(x.to(device)), y.to(device))))
        return net.state_dict()

    if args.classifier_cache:  # the same classes, backbone, seed and epochs: the same classifier
        key = common.fingerprint(backbone=args.backbone, deformable=args.deformable, known=known, seed=args.seed,
                                 epochs=args.cls_epochs, crops=images.shape)
        path = os.path.join(args.classifier_cache, f"classifier_{key}.pt")
        net.load_state_dict(common.cached(path, key, fit) if args.dist.main else fit())  # one writer
    else:
        fit()
    net.eval()
    crops = DataLoader(Crops(images[keep], labels), batch_size=256)
    with torch.no_grad():
        correct = sum((net(x.to(device)).argmax(1).cpu() == y).sum().item() for x, y in crops)
    return net, crops, correct / int(keep.sum())


def crops_of(data, categories) -> torch.Tensor:
    """``[n, 3, S, S]`` float classification crops (in ``[0, 1]``) of the given category ids."""
    images, cats = data["crops"]
    wanted = torch.tensor([int(c) in set(categories) for c in cats.tolist()], dtype=torch.bool)
    return images[wanted].float() / 255


# ----------------------------------------------------------------------------- evaluation


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


def evaluate(model, data, args, label_to_category, objects, *, objectness_sets=None, detect=None) -> dict:
    """COCO AP of the detector on the classes in ``objects`` (others: crowd), speed, and
    class-agnostic objectness AP on each set of ``objectness_sets`` ({name: categories}).
    ``detect(model, images)``: the detections (default: the model's own forward)."""
    model.eval()
    val = data["val"]
    loader = DataLoader(val, batch_size=1, collate_fn=collate, num_workers=args.workers)
    predictions, agnostic = {}, {}
    times = {"head": [0.0], "forward": [0.0]}  # roi_heads (forward + post-processing), the head's forward

    def hooks_of(module, store):
        return [module.register_forward_pre_hook(lambda m, i: store.append(-time.perf_counter())),
                module.register_forward_hook(lambda m, i, o: store.__setitem__(-1, store[-1] + time.perf_counter()))]

    hooks = hooks_of(model.roi_heads, times["head"]) + hooks_of(model.roi_heads.head, times["forward"])
    device = args.dist.device
    start, n = time.perf_counter(), 0
    with torch.no_grad():
        for images, targets in common.Progress(loader, desc="inference", quiet=not args.dist.main):
            images = [im.to(device) for im in images]
            with common.autocast(device, args.amp):
                dets = model(images) if detect is None else detect(model, images)
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
    head_ms, forward_ms = (1000 * sum(times[k][1:]) / max(n, 1) for k in ("head", "forward"))
    out = {"coco": coco_evaluate(results, ground_truth(gt, set(objects)), unknown_categories="ignore"),
           "images_per_s": n / seconds, "head_ms_per_image": head_ms, "postprocess_ms_per_image": head_ms - forward_ms,
           "detections": results}  # COCO results, for the bootstrap over images (the caller stores them apart)
    if objectness_sets:
        out["objectness_detections"] = to_coco_results(agnostic)
    for name, cats in (objectness_sets or {}).items():
        r = coco_evaluate(agnostic, ground_truth(gt, set(cats), agnostic=True))
        out[f"objectness_{name}"] = {k: r[k] for k in ("AP", "AP50", "AR100")}
    return out
