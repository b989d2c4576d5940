"""Train, infer and evaluate a detector with SNIPER (thesis ch. 3): chips and mined negatives.

SNIPER trains on 512x512 chips at 3x, 1.667x and longer side 512 (§3.3):
positive chips cover every object valid at its scale
(:class:`scalekit.chips.ChipGenerator`); negative chips are mined from the
proposals of a short RPN-only run trained on positive chips alone
(``--rpn-epochs``, or ``--rpn-iterations``, which count in ``--iterations``;
:class:`scalekit.detection.RPNOnly`,
:func:`scalekit.detection.mine_proposals`), and two per image are resampled
each epoch (:class:`scalekit.chips.ChipDataset`). ``--no-negatives`` drops
them (the ablation of Table 3.2); ``--two-scales`` trains without the 3x
level (Table 3.2's "SNIPER 2 scale"; inference keeps the full pyramid). Inside a
chip, out-of-range objects are ignore boxes and RoIs outside the chip's range
are ignored (§3.3.4). After training, the RPN's recall on the validation images
(300 proposals per SNIPER scale, as Table 3.1) is reported beside COCO AP.

Evaluation is the SNIP pyramid with Soft-NMS (:class:`scalekit.scale.Pyramid`),
then COCO AP, AP50, AP small/medium/large and recall by size, as
``examples/snip/train.py`` evaluates. Without ``--data`` a seeded synthetic
COCO-format dataset is generated on first use, at half resolution, with every
pixel size of the thesis halved (``--size-scale``). Outputs in ``--out``:
``results.json``, ``log.jsonl``, ``loss.png``, ``proposals.pt``,
``checkpoint.pt`` (each epoch; ``--resume`` continues from it).

    python examples/sniper/train.py --out runs/sniper
    python examples/sniper/train.py --no-negatives --out runs/sniper_no_neg
    torchrun --nproc_per_node 4 examples/sniper/train.py --data /coco \\
        --backbone resnet50 --pretrained --device cuda --amp --size-scale 1
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

from scalekit.chips import ChipDataset, ChipGenerator  # noqa: E402
from scalekit.detection import RPNOnly, mine_proposals  # noqa: E402
from scalekit.evaluation import proposal_recall  # noqa: E402
from scalekit.evaluation.recall import DEFAULT_SIZE_BINS  # noqa: E402
from scalekit.scale import SNIP_LEVELS, SNIPER_LEVELS, scaled_levels  # noqa: E402

SNIPER_CHIP, SNIPER_STRIDE = 512, 32  # SNIPER's chips (§3.3.1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = "(default: %(default)s)"
    p.add_argument("--no-negatives", action="store_true", help="positive chips only, no RPN pre-run (Table 3.2)")
    p.add_argument("--rpn-epochs", type=int, default=2, help=f"epochs of the RPN-only run that mines negative chips {d}")
    p.add_argument("--rpn-iterations", type=int, default=None, metavar="R",
                   help="the RPN-only run's budget in iterations instead of --rpn-epochs; with --iterations N the "
                        "detector then trains N - R, so that SNIPER's budget holds its RPN-only run")
    p.add_argument("--proposals-per-scale", type=int, default=300, help=f"RPN proposals kept per scale {d}")
    p.add_argument("--two-scales", action="store_true", help="train without the 3x level (Table 3.2)")
    common.add_detection_args(p, out="runs/sniper")
    common.add_test_level_arg(p)  # default here: SNIP's pyramid
    args = p.parse_args(argv)
    common.check_detection_args(p, args)
    if args.iterations and not args.no_negatives:
        if args.rpn_iterations is None:
            p.error("--iterations with negative chips needs --rpn-iterations (the RPN-only run counts in the budget)")
        if not 1 <= args.rpn_iterations < args.iterations:
            p.error(f"--rpn-iterations must lie in 1..{args.iterations - 1} (below --iterations), "
                    f"got {args.rpn_iterations}")
    args.recipe = ("sniper_no_neg" if args.no_negatives else "sniper") + ("_2scales" if args.two_scales else "")
    return args


def mine(args, train, generator, levels, log) -> tuple[list, float]:
    """SNIPER's negative-chip proposals: a short RPN-only run on positive chips, then its
    proposals at every level (kept in OUT/proposals.pt). Returns (proposals, seconds)."""
    path = os.path.join(args.out, "proposals.pt")
    if os.path.exists(path):
        return torch.load(path, weights_only=True), 0.0
    start = time.perf_counter()
    detector = common.build_detector(args.backbone, len(train.label_to_category), args.pretrained,
                                     args.init).to(args.dist.device)
    positives = ChipDataset(train, generator, seed=args.seed)
    common.fit(args, RPNOnly(detector), positives, args.rpn_epochs, log, "rpn", checkpoint=False,
               iterations=args.rpn_iterations, find_unused_parameters=True)  # the RoI heads idle
    proposals = mine_proposals(detector, train, levels, per_level=args.proposals_per_scale,
                               device=args.dist.device, progress=args.main)
    if args.main:
        torch.save(proposals, path)
    return proposals, time.perf_counter() - start


def rpn_recall(args, model, val) -> dict:
    """Table 3.1: the trained detector's RPN recall on ``val``, ``--proposals-per-scale`` proposals at each
    of SNIPER's three scales, AR and recall at IoU 0.5 by object size (SNIP's bins, in thesis pixels)."""
    s = args.size_scale
    proposals = mine_proposals(model, val, scaled_levels(SNIPER_LEVELS, s), per_level=args.proposals_per_scale,
                               device=args.dist.device, progress=args.main)
    bins = [(lo, hi) for lo, hi in DEFAULT_SIZE_BINS[:-1]] + [(DEFAULT_SIZE_BINS[-1][0], math.inf)]
    r = proposal_recall(proposals, [val.annotations(i)[0] for i in range(len(val))], top_k=None,
                        size_bins=[(lo * s, hi * s) for lo, hi in bins])
    by_size = {f"{lo:g}-{hi:g}": r["recall_by_size"][(lo * s, hi * s)] for lo, hi in bins}
    print(f"RPN recall: AR {r['AR']:.3f} AR50 {r['AR50']:.3f} | at IoU 0.5 by size: "
          + " ".join(f"{k} {v:.3f}" for k, v in by_size.items()), flush=True)
    return {"AR": r["AR"], "AR50": r["AR50"], "recall50_by_size": by_size,
            "num_gt_by_size": {f"{lo:g}-{hi:g}": int(r["num_gt_by_size"][(lo * s, hi * s)]) for lo, hi in bins}}


def main(argv=None) -> dict:
    args = parse_args(argv)
    train, val = common.setup_detection(args)
    s = args.size_scale
    levels = scaled_levels(SNIPER_LEVELS[1:] if args.two_scales else SNIPER_LEVELS, s)
    generator = ChipGenerator(levels=levels, chip_size=round(SNIPER_CHIP * s), stride=max(1, round(SNIPER_STRIDE * s)))
    log = common.JsonlLog(os.path.join(args.out, "log.jsonl"), enabled=args.main)

    proposals, rpn_seconds = (None, 0.0) if args.no_negatives else mine(args, train, generator, levels, log)
    dataset = ChipDataset(train, generator, proposals=proposals, seed=args.seed)

    torch.manual_seed(args.seed)
    model = common.build_detector(args.backbone, len(train.label_to_category), args.pretrained,
                                  args.init).to(args.dist.device)
    if args.main:
        print(f"recipe {args.recipe}: {len(train)} training images -> {len(dataset)} chips per epoch, "
              f"{len(val)} validation images", flush=True)
    # with a budget, the RPN-only run's iterations are spent before the detector's
    budget = None if args.iterations is None else args.iterations - (0 if args.no_negatives else args.rpn_iterations)
    test_levels = common.test_levels(args, scaled_levels(SNIP_LEVELS, s))
    spent = 0 if budget is None else args.iterations - budget  # --eval-at counts the RPN-only run too
    after_step, curve = common.budget_curve(args, model, val, test_levels, spent=spent)
    items, seconds = common.fit(args, model, dataset, args.epochs, log, iterations=budget,
                                after_step=after_step if args.eval_at else None)

    result = {}
    if args.main:
        stats, infer = common.evaluate_detector(args, model, val, test_levels)
        result = common.detection_results(args, args.recipe, dataset, train, val, stats, infer, items, seconds,
                                          rpn_seconds=rpn_seconds, rpn_iterations=args.rpn_iterations,
                                          detector_iterations=budget, budget=curve, test_level=args.test_level,
                                          proposal_recall=rpn_recall(args, model, val))
    args.dist.close()
    return result


if __name__ == "__main__":
    main()
