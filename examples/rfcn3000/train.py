"""R-FCN-3000 end to end (thesis ch. 4): super-classes, training, inference, new classes.

The steps, each from scalekit's public API:

1. **Super-classes** (§4.4.2): the class-mean features of a small classification
   network (:func:`scalekit.heads.class_mean_features`; the thesis uses ImageNet
   features) grouped by K-means (:func:`scalekit.heads.discover_superclasses`);
   how well clusters recover the shape families is printed (purity, ARI).
2. **The detector** (§4.4.3): backbone + torchvision's RPN + a
   :class:`scalekit.heads.DecoupledHead` (``--superclasses K``), trained with OHEM
   (:func:`scalekit.detection.faster_rcnn_with_head`); ``--head rfcn``: the
   class-specific :class:`scalekit.heads.RFCNHead` on the same schedule (Table
   4.6); ``--deformable``: deformable PSRoI pooling (+ conv in a ResNet).
3. **Inference**: ``p(super-class) x p(class)``, NMS per class (``--nms-groups``,
   §4.5.4), COCO mAP; class-agnostic objectness AP on all objects and on the
   held-out classes (Table 4.7, :func:`scalekit.detection.objectness_detections`);
   ``--rpn-objectness``: the RPN's scores as objectness, with and without the
   head's box regression (Table 4.5, :func:`scalekit.detection.proposal_detections`;
   ``--rpn-iou 0.5 0.4`` trains the RPN with the thesis' second overlap rule).
4. **New classes without boxes** (§4.6.3): each held-out class is
   added from its classification crops alone (:func:`scalekit.detection.add_class`)
   and its detection AP is reported.

``--train-on classification`` is Table 4.2's setting: the detector learns from
the classification images and their boxes (one object each, little context;
they reach the backbone at their own size) instead of detection images, and
is tested on the same detection images.

Data, the classification network and evaluation plumbing: ``rfcn3000_data.py``.

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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..")]
import common  # noqa: E402
import rfcn3000_data as data_lib  # noqa: E402

from scalekit.detection import (  # noqa: E402
    add_class,
    faster_rcnn_with_head,
    honour_ignore_boxes,
    image_features,
    keep_input_size,
    proposal_detections,
)
from scalekit.evaluation import adjusted_rand_index, cluster_purity  # noqa: E402
from scalekit.heads import DecoupledHead, RFCNHead, class_mean_features, discover_superclasses  # noqa: E402

# Thesis values (§4.5.2 unless said otherwise)
THESIS_SIZE = (375, 500)  # shorter side >= 375, longer side <= 500
THESIS_ANCHORS = (64, 128, 256)  # with aspect ratios 1:2, 1:1, 2:1
LR_DROP_AT = 5.33 / 7  # the learning rate drops 10x after 5.33 of 7 epochs
CLASS_LOSS_WEIGHT = 0.05  # the fine-grained loss's weight (§4.4.5)
OHEM_ROIS = 128  # hard RoIs per image (R-FCN)
POOL_SIZE = 7  # P x P position-sensitive bins
NMS_THRESHOLD = 0.3  # R-FCN's test NMS


def superclasses(args, data, device) -> dict:
    """Step 1: class-mean features of a classification network, then K-means (§4.4.2)."""
    t0 = time.perf_counter()
    net, crops, accuracy = data_lib.train_classifier(args, data, device)
    known = data["known"]
    features = class_mean_features(net.features, crops, len(known), device=device)
    families = np.unique([data["families"].get(c, "") for c in known], return_inverse=True)[1]
    n_fam = int(families.max()) + 1
    found = discover_superclasses(features, n_fam, seed=args.seed).numpy()  # do clusters recover the families?
    chosen = discover_superclasses(features, min(args.superclasses, len(known)), seed=args.seed)
    out = {"classifier_train_accuracy": accuracy, "families": n_fam,
           "recovery_purity": cluster_purity(found, families),
           "recovery_ari": adjusted_rand_index(found, families), "k": int(chosen.max()) + 1,
           "seconds": time.perf_counter() - t0, "superclass_of": chosen, "backbone": net.backbone.state_dict()}
    if args.dist.main:
        print(f"super-classes: classifier train accuracy {accuracy:.3f}; K-means with K = {n_fam} (the number of "
              f"families) recovers the families with purity {out['recovery_purity']:.3f}, adjusted Rand index "
              f"{out['recovery_ari']:.3f}; the detector uses K = {out['k']}", flush=True)
    return out


def build_model(args, num_classes: int, superclass_of=None):
    """Step 2: backbone + torchvision RPN + the chosen head, as one torchvision ``FasterRCNN``."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    backbone = common.single_level_backbone(args.backbone, args.deformable, args.pretrained)
    c, scale = backbone.out_channels, 1 / backbone.stride
    if args.head == "decoupled":
        head = DecoupledHead(c, num_classes, superclass_of, pool_size=args.pool_size, spatial_scale=scale,
                             mid_channels=args.width, fine_channels=args.width, deformable=args.deformable,
                             class_loss_weight=args.class_loss_weight, nms_groups=args.nms_groups)
    else:
        head = RFCNHead(c, num_classes, pool_size=args.pool_size, spatial_scale=scale, mid_channels=args.width,
                        deformable=args.deformable)
    model = faster_rcnn_with_head(backbone, head, ohem=args.ohem or None, min_size=args.min_size,
                                  max_size=args.max_size, rpn_pre_nms_top_n_train=1000,
                                  rpn_anchor_generator=AnchorGenerator((tuple(args.anchors),), ((0.5, 1.0, 2.0),)),
                                  rpn_post_nms_top_n_train=args.proposals, rpn_pre_nms_top_n_test=1000,
                                  rpn_post_nms_top_n_test=args.proposals, rpn_fg_iou_thresh=args.rpn_iou[0],
                                  rpn_bg_iou_thresh=args.rpn_iou[1])
    model.roi_heads.postprocess_kwargs.update(score_threshold=args.score_threshold, nms_threshold=NMS_THRESHOLD)
    return honour_ignore_boxes(model)


def add_held_out_classes(model, data, args, label_to_category: dict) -> list[int]:
    """Step 4: one classifier row per held-out class from its crops alone (no box), §4.6.3."""
    negatives = data_lib.crops_of(data, data["known"])
    negatives = negatives[torch.randperm(len(negatives), generator=torch.Generator().manual_seed(args.seed))[:2000]]
    negatives = image_features(model, negatives)  # once for every new class
    added = []
    for cat in data["held_out"]:
        positives = data_lib.crops_of(data, [cat])
        if len(positives) == 0:
            print(f"held-out category {cat}: no classification crops, not added", flush=True)
            continue
        label_to_category[add_class(model, positives, negative_features=negatives)] = cat
        added.append(cat)
    return added


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
    a("--nms-groups", choices=("class", "superclass", "agnostic"), default="class",
      help="decoupled head: NMS per class, per super-class or class-agnostic (default: %(default)s; §4.5.4)")
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
    a("--box-held-out", action="store_true", help="train with boxes of the held-out classes too (Table 4.7's OB: "
      "objectness that has seen them; their objectness AP is still reported)")
    a("--rpn-iou", type=float, nargs=2, default=(0.7, 0.3), metavar=("FG", "BG"), help="RPN anchors: positive "
      "above FG, negative below BG (default: %(default)s, Faster R-CNN's; the thesis' Table 4.5 also 0.5 0.4)")
    a("--rpn-objectness", action="store_true", help="decoupled head: also AP with the RPN's scores as objectness, "
      "with and without the head's box regression (Table 4.5)")
    a("--train-on", choices=("detection", "classification"), default="detection", help="train the detector on the "
      "detection images or on the classification images and their boxes (Table 4.2's setting; default: %(default)s)")
    a("--nms-compare", action="store_true", help="decoupled head: AP and NMS time of the trained detector with "
      "NMS per class, per super-class and class-agnostic (Table 4.4)")
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
    if not 0 < args.rpn_iou[1] <= args.rpn_iou[0] < 1:
        common.fail(f"--rpn-iou needs 0 < BG <= FG < 1, got {args.rpn_iou}")
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
            data_lib.synthetic_paths(args)
        return {}
    data = data_lib.load_data(args)
    known = data["known"]
    category_to_label = {c: i + 1 for i, c in enumerate(known)}
    label_to_category = {i + 1: c for i, c in enumerate(known)}

    sc = superclasses(args, data, device)
    model = build_model(args, len(known), sc["superclass_of"] if args.head == "decoupled" else None).to(device)
    if not args.no_init_from_classifier:
        model.backbone.load_state_dict(sc["backbone"])
    loader, sampler = data_lib.train_loader(args, data, category_to_label)
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
    keep_input_size(model, args.train_on == "classification")  # classification images at their own size
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
    keep_input_size(model, False)  # the detection images are tested as the detector's transform sizes them

    results = {"args": {k: v for k, v in vars(args).items() if k != "dist"}, "train_seconds": train_seconds,
               "num_known": len(known), "num_held_out": len(data["held_out"]), "held_out": data["held_out"],
               "superclasses": {k: v for k, v in sc.items() if k not in ("superclass_of", "backbone")}}
    sets = {"all": data["categories"], "held_out": data["held_out"]} if data["held_out"] else {"all": data["categories"]}
    results["known"] = known_eval = data_lib.evaluate(model, data, args, label_to_category, known,
                                                      objectness_sets=sets)
    print(f"known classes ({len(known)}): AP {known_eval['coco']['AP']:.4f} AP50 {known_eval['coco']['AP50']:.4f}; "
          f"{known_eval['images_per_s']:.1f} images/s, head {known_eval['head_ms_per_image']:.1f} ms/image", flush=True)
    detections = {"known": known_eval.pop("detections"), "objectness": known_eval.pop("objectness_detections")}
    for name in sets:
        o = known_eval[f"objectness_{name}"]
        print(f"objectness on {name} objects: AP {o['AP']:.4f} AP50 {o['AP50']:.4f}", flush=True)
    if args.nms_compare and args.head == "decoupled":  # Table 4.4: the same detector, three NMS groupings
        head, results["nms_groups"] = model.roi_heads.head, {}
        kept = head.nms_group_of.clone()
        for name, groups in (("class", torch.arange(len(known))), ("superclass", head.superclass_of),
                             ("agnostic", torch.zeros(len(known), dtype=torch.int64))):
            head.nms_group_of.copy_(groups)
            e = data_lib.evaluate(model, data, args, label_to_category, known)
            detections[f"nms_{name}"] = e.pop("detections")
            results["nms_groups"][name] = {"AP": e["coco"]["AP"], "AP50": e["coco"]["AP50"],
                                           "postprocess_ms_per_image": e["postprocess_ms_per_image"]}
            print(f"NMS per {name}: AP {e['coco']['AP']:.4f}, post-processing "
                  f"{e['postprocess_ms_per_image']:.1f} ms/image", flush=True)
        head.nms_group_of.copy_(kept)
    if args.rpn_objectness and args.head == "decoupled":  # Table 4.5: the RPN's scores as objectness
        results["rpn_objectness"] = {}
        for name, bbr in (("rpn", False), ("rpn_bbr", True)):
            e = data_lib.evaluate(model, data, args, label_to_category, known,
                                  detect=lambda m, ims, bbr=bbr: proposal_detections(m, ims, box_regression=bbr))
            detections[name] = e.pop("detections")
            results["rpn_objectness"][name] = {k: e["coco"][k] for k in ("AP", "AP50", "AP75")}
            print(f"RPN scores as objectness, {'with' if bbr else 'without'} box regression: AP "
                  f"{e['coco']['AP']:.4f} AP50 {e['coco']['AP50']:.4f} AP75 {e['coco']['AP75']:.4f}", flush=True)
    if data["held_out"] and not args.no_add_classes and args.head == "decoupled" and not args.box_held_out:
        t0 = time.perf_counter()
        added = add_held_out_classes(model, data, args, label_to_category)
        results["add_class_seconds"] = time.perf_counter() - t0
        results["all"] = full = data_lib.evaluate(model, data, args, label_to_category, data["categories"])
        detections["all"] = full.pop("detections")
        per_class, results["added"] = full["coco"]["per_class"], added
        held = [per_class[c] for c in added if per_class.get(c, -1) >= 0]
        results["held_out_AP"] = float(np.mean(held)) if held else -1.0
        results["held_out_per_class_AP"] = {str(c): per_class.get(c, -1.0) for c in added}
        print(f"add_class: {len(added)} held-out classes added from classification crops alone "
              f"({results['add_class_seconds']:.1f} s); their detection AP {results['held_out_AP']:.4f}; "
              f"all {len(data['categories'])} classes: AP {full['coco']['AP']:.4f}", flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)
    np.savez_compressed(os.path.join(args.out, "detections.npz"), **{  # rows: image, category, x, y, w, h, score
        k: np.array([[r["image_id"], r["category_id"], *r["bbox"], r["score"]] for r in v]).reshape(-1, 7)
        for k, v in detections.items()})
    args.dist.close()
    return results


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
