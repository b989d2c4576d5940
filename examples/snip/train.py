"""Train, infer and evaluate a detector with SNIP or the protocols it replaced (thesis ch. 2).

Recipes (``--recipe``):

* ``single``: whole images at one scale (``--scale``, default 800x1333, times
  ``--size-scale``), every object trained, or only those whose size in the
  original image lies in ``--train-range`` (the others ignore boxes);
* ``multiscale``: whole images at the three SNIP scales, every object trained
  at every scale (multi-scale training, thesis Fig. 2.5);
* ``snip``: the same pyramid, but at each scale only the objects in its valid
  range train; the others are ignore boxes (anchors near them give no
  gradient) and RoIs whose own size is outside the range are neither
  foreground nor background (§2.6.1); the finest scale is trained on SNIP's
  1000x1000 sub-image chips (§2.6.2). ``--warm-start-epochs E`` trains the
  first E epochs as ``multiscale`` in the same windows, then switches the
  ranges on, as the thesis warm-starts SNIP (§2.7.1).

Table 2.1's arms (thesis §2.5) are ``single --scale 800 1200`` (800_all),
``single --scale 1400 2000`` (1400_all), ``single --scale 1400 2000 --train-range
0 80`` (1400_<80px), ``multiscale`` and ``snip``, each tested with
``--test-level 1400 2000`` (one level, every detection kept) on small objects.

The training set of every recipe is one library block,
:class:`scalekit.chips.LevelDataset` (``ranges=True`` for SNIP). Every recipe
is evaluated the same way: the SNIP pyramid with Soft-NMS
(:class:`scalekit.scale.Pyramid`; one unbounded level for ``single``), then
COCO AP, AP50, AP small/medium/large and recall by size.

Without ``--data`` a seeded synthetic COCO-format dataset is generated on
first use, at half the default resolution, and every pixel size of the thesis
(scales, valid ranges, chip sizes) is halved with it (``--size-scale``).
Outputs in ``--out``: ``results.json``, ``log.jsonl``, ``loss.png``,
``checkpoint.pt`` (each epoch; ``--resume`` continues from it).

    python examples/snip/train.py --recipe snip --out runs/snip
    torchrun --nproc_per_node 4 examples/snip/train.py --recipe snip --data /coco \\
        --backbone resnet50 --pretrained --device cuda --amp --size-scale 1
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

from scalekit.chips import LevelDataset  # noqa: E402
from scalekit.scale import SNIP_LEVELS, AreaRange, ScaleSpec, scaled_levels  # noqa: E402

RECIPES = ("single", "multiscale", "snip")
SNIP_CHIP = 1000  # SNIP's sub-image chips at the finest level (§2.6.2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", choices=RECIPES, default="snip", help="training protocol (default: %(default)s)")
    p.add_argument("--scale", type=float, nargs=2, default=common.SINGLE_SCALE, metavar=("SHORT", "MAX"),
                   help="single: the training scale, shorter side and longest side limit, in thesis pixels "
                        "(default: %(default)s)")
    p.add_argument("--train-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="single: train only objects of size (sqrt(area), original pixels) in [LO, HI); the others "
                        "are ignore boxes and RoIs outside it are ignored (1400_<80px: 0 80) (default: all)")
    p.add_argument("--warm-start-epochs", type=int, default=0, metavar="E",
                   help="snip: train the first E epochs as multiscale, then with the ranges (§2.7.1) "
                        "(default: %(default)s)")
    common.add_detection_args(p, out="runs/snip")
    common.add_test_level_arg(p)  # default here: SNIP's pyramid, or the training scale for single
    args = p.parse_args(argv)
    common.check_detection_args(p, args)
    if args.warm_start_epochs and args.recipe != "snip":
        p.error("--warm-start-epochs is for --recipe snip (it says when SNIP's ranges switch on)")
    if args.warm_start_epochs < 0:
        p.error("--warm-start-epochs must be at least 0")
    if args.recipe != "single" and (args.train_range is not None or list(args.scale) != list(common.SINGLE_SCALE)):
        p.error("--scale and --train-range are for --recipe single (the pyramid recipes use SNIP's levels)")
    if args.train_range is not None and not 0 <= args.train_range[0] < args.train_range[1]:
        p.error(f"--train-range must be 0 <= LO < HI, got {args.train_range}")
    for name in ("scale", "test_level"):
        if getattr(args, name) is not None and min(getattr(args, name)) <= 0:
            p.error(f"--{name.replace('_', '-')} sizes must be positive, got {getattr(args, name)}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    train, val = common.setup_detection(args)
    s = args.size_scale
    if args.recipe == "single":
        area = AreaRange() if args.train_range is None else AreaRange(*args.train_range)
        levels = ((ScaleSpec.shorter_side(*args.scale), area),)
    else:
        levels = SNIP_LEVELS
    levels = scaled_levels(levels, s)
    test_levels = common.test_levels(args, levels)
    if args.recipe == "single" and args.test_level is None:
        test_levels = ((levels[0][0], AreaRange()),)  # a single-scale detector keeps every detection

    # the training set: every image at every level; SNIP's ranges and sub-image chips
    if args.recipe == "snip":
        dataset = LevelDataset(train, levels, ranges=True, chip_sizes=(round(SNIP_CHIP * s), None, None),
                               seed=args.seed, ranges_from_epoch=args.warm_start_epochs)
    else:  # single with --train-range: that range, whole images
        dataset = LevelDataset(train, levels, ranges=args.train_range is not None, seed=args.seed)

    torch.manual_seed(args.seed)
    model = common.build_detector(args.backbone, len(train.label_to_category), args.pretrained,
                                  args.init).to(args.dist.device)
    log = common.JsonlLog(os.path.join(args.out, "log.jsonl"), enabled=args.main)
    if args.main:
        print(f"recipe {args.recipe}: {len(train)} training images -> {len(dataset)} training inputs per epoch, "
              f"{len(val)} validation images", flush=True)
    after_step, curve = common.budget_curve(args, model, val, test_levels)
    items, seconds = common.fit(args, model, dataset, args.epochs, log, iterations=args.iterations,
                                after_step=after_step if args.eval_at else None)

    result = {}
    if args.main:
        stats, infer = common.evaluate_detector(args, model, val, test_levels)
        result = common.detection_results(args, args.recipe, dataset, train, val, stats, infer, items, seconds,
                                          budget=curve, warm_start_epochs=args.warm_start_epochs,
                                          scale=list(args.scale), train_range=args.train_range,
                                          test_level=args.test_level, init=args.init)
    args.dist.close()
    return result


if __name__ == "__main__":
    main()
