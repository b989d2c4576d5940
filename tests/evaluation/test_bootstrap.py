"""The bootstrap of COCO AP over images (scalekit.evaluation.bootstrap) against pycocotools itself:
on the images as they are it is pycocotools' AP, and a resample is pycocotools' AP on a test set
that lists the drawn images with their repeats."""

import numpy as np
import pytest

from scalekit.evaluation import (bootstrap_coco_ap, coco_evaluate, coco_image_matches, paired_bootstrap,
                                 paired_difference)


def scene(seed, n_images=12, cats=(1, 2, 3)):
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 100, "height": 100} for i in range(n_images)]
    anns, dets = [], []
    for im in images:
        for _ in range(rng.integers(0, 4)):
            x, y, w, h = rng.uniform(0, 60, 2).tolist() + rng.uniform(8, 40, 2).tolist()
            c = int(rng.choice(cats))
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": int(rng.random() < 0.1)})
            for _ in range(rng.integers(0, 3)):  # near hits, sometimes of the wrong class
                jitter = rng.normal(0, 4, 4)
                dets.append({"image_id": im["id"], "category_id": c if rng.random() < 0.7 else int(rng.choice(cats)),
                             "bbox": [x + jitter[0], y + jitter[1], max(2, w + jitter[2]), max(2, h + jitter[3])],
                             "score": float(rng.random())})
        for _ in range(rng.integers(0, 3)):  # false positives
            dets.append({"image_id": im["id"], "category_id": int(rng.choice(cats)),
                         "bbox": rng.uniform(0, 60, 2).tolist() + rng.uniform(5, 30, 2).tolist(),
                         "score": float(rng.random())})
    return {"images": images, "annotations": anns, "categories": [{"id": c} for c in cats]}, dets


def repeated(gt, dets, drawn):
    """The test set with the images listed as drawn (repeats as new images), and its detections."""
    images, anns, out = [], [], []
    for new_id, old in enumerate(drawn, start=1):
        images.append({**gt["images"][old], "id": new_id})
        old_id = gt["images"][old]["id"]
        anns += [{**a, "id": len(anns) + 1 + k, "image_id": new_id}
                 for k, a in enumerate(a for a in gt["annotations"] if a["image_id"] == old_id)]
        out += [{**d, "image_id": new_id} for d in dets if d["image_id"] == old_id]
    return {**gt, "images": images, "annotations": anns}, out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unresampled_column_is_pycocotools_ap(seed):
    gt, dets = scene(seed)
    m = coco_image_matches(dets, gt)
    ref = coco_evaluate(dets, gt)
    assert bootstrap_coco_ap([m], resamples=0)[0, 0] == pytest.approx(ref["AP"], abs=1e-12)
    assert bootstrap_coco_ap([m], resamples=0, iou=0.5)[0, 0] == pytest.approx(ref["AP50"], abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_area_range_is_pycocotools_ap_on_those_objects(seed):
    gt, dets = scene(seed)
    ref = coco_evaluate(dets, gt)
    for area, key in (("small", "APs"), ("medium", "APm"), ((32**2, 96**2), "APm")):
        ap = bootstrap_coco_ap([coco_image_matches(dets, gt, area=area)], resamples=0)[0, 0]
        if ref[key] == -1:  # no object of that size: COCO says -1, the bootstrap NaN
            assert np.isnan(ap), area
        else:
            assert ap == pytest.approx(ref[key], abs=1e-12), area
    assert ref["APs"] != pytest.approx(ref["AP"])  # the area does change the answer here
    for bad in ("tiny", (5, 1), "xy"):
        with pytest.raises(ValueError, match="area"):
            coco_image_matches(dets, gt, area=bad)


@pytest.mark.parametrize("seed", [3, 4])
def test_a_resample_is_pycocotools_on_the_images_listed_with_repeats(seed):
    gt, dets = scene(seed)
    m = coco_image_matches(dets, gt)
    n, resamples = len(gt["images"]), 5
    ap = bootstrap_coco_ap([m], resamples=resamples, seed=seed)[0]
    rng = np.random.default_rng(seed)  # the same draws as bootstrap_coco_ap's
    for b in range(1, resamples + 1):
        drawn = sorted(rng.integers(0, n, n).tolist())
        big_gt, big_dets = repeated(gt, dets, drawn)
        assert ap[b] == pytest.approx(coco_evaluate(big_dets, big_gt)["AP"], abs=1e-12)


def test_paired_resamples_and_the_interval():
    gt, dets = scene(5, n_images=30)
    worse = [{**d, "score": d["score"] * 0.5} if i % 2 else d for i, d in enumerate(dets)]
    a, b = bootstrap_coco_ap([coco_image_matches(dets, gt), coco_image_matches(dets, gt)], resamples=50)
    assert np.array_equal(a, b)  # the same detections on the same resamples: identical rows
    d = paired_difference(a, b)
    assert d == {"difference": 0.0, "low": 0.0, "high": 0.0, "holds": False, "bootstrap_mean": 0.0,
                 "method": "basic", "resamples_used": 50}
    ap = bootstrap_coco_ap([coco_image_matches(dets, gt), coco_image_matches(worse, gt)], resamples=200)
    d = paired_difference(ap[0], ap[1])
    assert d["low"] <= d["difference"] <= d["high"] and d["holds"] == (d["low"] > 0 or d["high"] < 0)
    diff = ap[0, 1:] - ap[1, 1:]  # basic: the percentile interval reflected about the estimate
    p = paired_difference(ap[0], ap[1], method="percentile")
    assert (p["low"], p["high"]) == pytest.approx(tuple(np.percentile(diff, [2.5, 97.5])))
    assert d["low"] == pytest.approx(2 * d["difference"] - p["high"])
    assert d["high"] == pytest.approx(2 * d["difference"] - p["low"])


def test_a_shifted_bootstrap_is_reflected_about_the_estimate():
    # resamples centred 0.1 above the estimate: the percentile interval misses the estimate, the basic one not
    a = np.array([0.3, *np.linspace(0.35, 0.45, 101)])
    d = paired_difference(a, np.zeros_like(a))
    assert d["low"] == pytest.approx(0.1525) and d["high"] == pytest.approx(0.2475) and d["holds"]
    p = paired_difference(a, np.zeros_like(a), method="percentile")
    assert p["low"] > 0.3 and d["bootstrap_mean"] == pytest.approx(0.4)


def test_bad_input_is_named():
    gt, dets = scene(6)
    other_gt, other = scene(7, n_images=5)
    with pytest.raises(ValueError, match="matches\\[1\\] is on other images"):
        bootstrap_coco_ap([coco_image_matches(dets, gt), coco_image_matches(other, other_gt)])
    with pytest.raises(ValueError, match="iou must be one of"):
        bootstrap_coco_ap([coco_image_matches(dets, gt)], iou=0.42)
    with pytest.raises(ValueError, match="a and b must be"):
        paired_difference(np.zeros(3), np.zeros(4))


def test_paired_bootstrap_pairs_items_and_seeds():
    rng = np.random.default_rng(0)
    items = rng.normal(0, 10, 40)  # item difficulty varies a lot; arm a is 0.5 better on every item
    mean = lambda arm, idx: float(arm[idx].mean())  # noqa: E731
    out = paired_bootstrap(mean, [items + 0.5], [items], 40, resamples=300)
    assert abs(out["diff"] - 0.5) < 1e-9 and abs(out["low"] - 0.5) < 1e-9 and abs(out["high"] - 0.5) < 1e-9
    assert out["holds"] == "a>b" and out["per_seed"] == [pytest.approx(0.5)]
    # Paired by seed: the per-seed differences are averaged inside every resample.
    out = paired_bootstrap(mean, [items + 1.0, items - 0.2], [items, items], 40, resamples=300)
    assert out["diff"] == pytest.approx(0.4) and out["low"] == pytest.approx(0.4) and out["holds"] == "a>b"
    assert out["per_seed"] == [pytest.approx(1.0), pytest.approx(-0.2)]
    # No real difference: the interval holds zero and no direction holds.
    noise = items + rng.normal(0, 1, 40)
    out = paired_bootstrap(mean, [noise - (noise - items).mean()], [items], 40, resamples=300, seed=1)
    assert out["low"] < 0 < out["high"] and out["holds"] is None
    with pytest.raises(ValueError, match="paired by seed"):
        paired_bootstrap(mean, [items], [], 40)


def test_resamples_without_any_object_are_counted_and_none_at_all_is_an_error():
    a, b = np.array([0.5, 0.6, np.nan, 0.4, np.nan]), np.array([0.3, 0.3, 0.2, np.nan, np.nan])
    assert paired_difference(a, b)["resamples_used"] == 1  # only the first resample has both
    with pytest.raises(ValueError, match="not finite in any of its 2 resamples"):
        paired_difference(np.array([0.5, np.nan, np.nan]), np.array([0.3, 0.1, np.nan]))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, 10**7])
def test_resample_counts_are_bounded_and_named(bad):
    with pytest.raises(ValueError, match="resamples must be an integer"):
        paired_bootstrap(lambda run, idx: 0.0, [1], [2], 5, resamples=bad)
    if bad != 0:
        with pytest.raises(ValueError, match="resamples must be an integer"):
            bootstrap_coco_ap([coco_image_matches([], scene(0)[0])], resamples=bad)
    with pytest.raises(ValueError, match="num_items must be an integer"):
        paired_bootstrap(lambda run, idx: 0.0, [1], [2], bad if bad != 10**7 else 0, resamples=10)


def test_non_finite_or_foreign_results_are_refused_not_scored():
    gt, _ = scene(0)
    hit = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}
    for bad, what in (({"score": float("nan")}, "must be finite"), ({"bbox": [0, float("inf"), 10, 10]}, "must be finite"),
                      ({"image_id": 999}, "image_id 999 is not in the ground truth")):
        with pytest.raises(ValueError, match=f"results.*{what}"):
            coco_image_matches([{**hit, **bad}], gt)
        with pytest.raises(ValueError, match=f"predictions.*{what}"):
            coco_evaluate([{**hit, **bad}], gt)
