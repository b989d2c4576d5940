"""Two-scale inference of R-FCN-3000 (thesis §4.5.2): the trained ``K1`` detectors of a reproduction
at the training scale and at twice it, merged by NMS per class, against the training scale alone.

The thesis tests at (375, 500) and (750, 1000) and merges the two scales' detections with NMS
(40.5 -> 43.3 mAP). Here: 128 and 256 px, :class:`scalekit.scale.Pyramid` with every size valid at
both levels and greedy NMS at 0.3 per class (``method="hard"``, the detector's own NMS), at most 100
detections per image; the one-scale arm goes through the same Pyramid with one level, so that the
only change is the second scale. COCO AP over the 200 known classes, paired bootstrap over the
validation images (:mod:`rfcn3000_stats`). Reads ``RUN/K1_s<seed>/checkpoint.pt``.

    python examples/rfcn3000/two_scale.py --run runs/rfcn3000_repro --seeds 0 1 2 \\
        --json docs/_static/rfcn3000_two_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import common  # noqa: E402
import rfcn3000_data as data_lib  # noqa: E402
import rfcn3000_stats as stats  # noqa: E402

from scalekit.evaluation import bootstrap_coco_ap, coco_image_matches, paired_difference, to_coco_results  # noqa: E402
from scalekit.scale import AreaRange, Pyramid, ScaleSpec  # noqa: E402


def detections(model, data, sizes, label_to_category) -> list[dict]:
    pyramid = Pyramid([(ScaleSpec.shorter_side(s, s), AreaRange(0)) for s in sizes], method="hard",
                      iou_threshold=0.3, score_threshold=0.001, max_detections=100)
    predictions = {}
    with torch.no_grad():
        for i in range(len(data["val"])):
            image, target = data["val"][i]
            predictions[target["image_id"]] = pyramid.detect(model, image)
    return to_coco_results(predictions, label_to_category)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/rfcn3000_repro", help="the reproduction's output folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--json", help="also write the JSON here")
    args = p.parse_args(argv)
    train = common.import_script(os.path.join(HERE, "train.py"), "rfcn3000_train")
    targs = train.parse_args(["--synthetic-dir", os.path.join(args.run, "data"), "--out", os.path.join(args.run, "_2s")])
    targs.dist = common.Distributed("cpu")
    data = data_lib.load_data(targs)
    known = data["known"]
    label_to_category = {i + 1: c for i, c in enumerate(known)}
    gt = data_lib.ground_truth(data["val"].coco.dataset, set(known))
    matches = {"one": [], "two": []}
    for seed in args.seeds:
        model = train.build_model(targs, len(known))
        common.load_checkpoint(os.path.join(args.run, f"K1_s{seed}", "checkpoint.pt"), model=model)
        model.eval()
        for arm, sizes in (("one", (128,)), ("two", (128, 256))):
            results = [r for r in detections(model, data, sizes, label_to_category) if r["category_id"] in set(known)]
            matches[arm].append(coco_image_matches(results, gt))
            print(f"seed {seed}, {arm} scale(s): AP {bootstrap_coco_ap(matches[arm][-1:], resamples=0)[0, 0]:.4f}",
                  flush=True)
    ap = bootstrap_coco_ap(matches["two"] + matches["one"], resamples=args.resamples)
    s = len(args.seeds)
    d = paired_difference(ap[:s].mean(0), ap[s:].mean(0))
    result = {"seeds": args.seeds, "resamples": args.resamples, "AP_one_scale": ap[s:, 0].tolist(),
              "AP_two_scales": ap[:s, 0].tolist(), "two - one": {**d, "per_seed": (ap[:s, 0] - ap[s:, 0]).tolist()}}
    print(stats.two_scale_table(result))
    for path in filter(None, (os.path.join(args.run, "two_scale.json"), args.json)):
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
