"""The R-FCN-3000 reproduction's statistics and tables: paired bootstrap comparisons over the
validation images (:func:`scalekit.evaluation.bootstrap_coco_ap`) and the RST tables of
``docs/reproductions_rfcn3000.rst``, generated from ``results.json`` alone (a test checks the
page against the committed JSON)."""

from __future__ import annotations

import json
import os

import numpy as np

from scalekit.evaluation import bootstrap_coco_ap, coco_image_matches, paired_difference

# (name, arm A, arm B, which AP, what it tests): A - B, paired over images, averaged over the seeds both ran.
# An arm is a run, or (run, detections) for another set of the run's stored detections than "known".
COMPARISONS = (
    ("K5 - K1", "K5", "K1", "known", "Table 4.3: 5 super-classes vs 1, NMS per class in both"),
    ("K25 - K1", "K25", "K1", "known", "Table 4.3: 25 super-classes vs 1, NMS per class in both"),
    ("decoupled - R-FCN (20 classes)", "K1_c20", "rfcn_c20", "known", "Table 4.6: NMS per class in both"),
    ("OB - GO (held-out objects)", "OB", "K1", "held_out", "Table 4.7: objectness trained with vs without "
     "boxes of the held-out classes"),
    ("50 - 10 training classes (held-out objects)", "K1_c50", "K1_c10", "held_out", "Fig. 4.7"),
    ("200 - 50 training classes (held-out objects)", "K1", "K1_c50", "held_out", "Fig. 4.7"),
    ("3 - 1 epochs", "K1", "K1_e1", "known", "budget"),
    ("6 - 3 epochs", "K1_e6", "K1", "known", "budget"),
    ("12 - 6 epochs", "K1_e12", "K1_e6", "known", "budget"),
    ("RPN + BBR - RPN (overlap 0.7)", ("K1", "rpn_bbr"), ("K1", "rpn"), "known", "Table 4.5: box regression"),
    ("RPN + BBR - RPN (overlap 0.5)", ("K1_ov05", "rpn_bbr"), ("K1_ov05", "rpn"), "known",
     "Table 4.5: box regression"),
    ("RPN overlap 0.5 - 0.7 (no BBR)", ("K1_ov05", "rpn"), ("K1", "rpn"), "known", "Table 4.5: RPN overlap"),
    ("RPN overlap 0.5 - 0.7 (BBR)", ("K1_ov05", "rpn_bbr"), ("K1", "rpn_bbr"), "known", "Table 4.5: RPN overlap"),
    ("decoupled - RPN + BBR (overlap 0.7)", "K1", ("K1", "rpn_bbr"), "known",
     "Table 4.5: the detection branch's objectness vs the RPN's"),
    ("detection - classification images", "K1", "K1_cls", "known",
     "Table 4.2's setting: what training on classification images with boxes costs"),
)
NMS_ARMS = ("class", "superclass", "agnostic")


def _results(rows: np.ndarray) -> list[dict]:
    return [{"image_id": int(r[0]), "category_id": int(r[1]), "bbox": r[2:6].tolist(), "score": float(r[6])}
            for r in rows]


def matches_of(run_dir: str, key: str, gt: dict, objects: set, *, agnostic: bool) -> dict:
    """pycocotools' matching of one run's stored detections (``detections.npz[key]``) on the
    validation GT with only ``objects`` as objects (others: crowd, as the run's own evaluation)."""
    import rfcn3000_data as data_lib  # noqa: PLC0415 (sys.path set by the driver)

    rows = np.load(os.path.join(run_dir, "detections.npz"))[key]
    dets = _results(rows if agnostic else rows[np.isin(rows[:, 1], sorted(objects))])
    return coco_image_matches(dets, data_lib.ground_truth(gt, objects, agnostic=agnostic))


def compare(runs: list[dict], out: str, gt: dict, held_out: list[int], resamples: int = 1000) -> dict:
    """Every comparison of :data:`COMPARISONS` whose two runs exist, and Table 4.4's NMS groupings."""
    by = {(r["run"], r["seed"]): r for r in runs}
    table = {}

    def known_of(r):
        return {int(c) for c in r["known"]["coco"]["per_class"]}

    cache = {}  # an arm's bootstrap AP is the same in every comparison (same images, same resamples)

    def scored(name, seed, key, kind):
        if (name, seed, key, kind) not in cache:
            folder = os.path.join(out, f"{name}_s{seed}")
            objects = set(held_out) if kind == "held_out" else known_of(by[(name, seed)])
            m = matches_of(folder, "objectness" if kind == "held_out" else key, gt, objects,
                           agnostic=kind == "held_out")
            cache[(name, seed, key, kind)] = bootstrap_coco_ap([m], resamples=resamples)[0]
        return cache[(name, seed, key, kind)]

    def rows(pairs, kind):
        return np.stack([scored(name, seed, key, kind) for name, seed, key in pairs])

    for label, a, b, kind, what in COMPARISONS:
        (a, key_a), (b, key_b) = (arm if isinstance(arm, tuple) else (arm, "known") for arm in (a, b))
        seeds = sorted(s for (n, s) in by if n == a and (b, s) in by and all(
            k == "known" or k in by[(n_, s)].get("rpn_objectness", {}) for n_, k in ((a, key_a), (b, key_b))))
        if not seeds:
            continue
        for s in seeds:  # paired arms must be scored on the same classes (as bootstrap_coco_ap checks)
            if kind == "known" and known_of(by[(a, s)]) != known_of(by[(b, s)]):
                raise ValueError(f"{label}: {a} and {b} (seed {s}) were evaluated on different classes; "
                                 "a paired comparison needs the same test set")
        ap = rows([(a, s, key_a) for s in seeds] + [(b, s, key_b) for s in seeds], kind)
        table[label] = _difference(ap[:len(seeds)], ap[len(seeds):], seeds, kind, what)
    for k in ("K5", "K25"):  # Table 4.4: the same trained detectors, NMS per class / super-class / agnostic
        seeds = sorted(s for (n, s) in by if n == k and "nms_groups" in by[(n, s)])
        if not seeds:
            continue
        ap = rows([(k, s, f"nms_{g}") for g in NMS_ARMS for s in seeds], "known").reshape(3, len(seeds), -1)
        for g in NMS_ARMS[1:]:
            table[f"{k}: NMS per {g} - per class"] = _difference(ap[NMS_ARMS.index(g)], ap[0], seeds, "known",
                                                                 "Table 4.4")
    return table


def _difference(a: np.ndarray, b: np.ndarray, seeds: list, kind: str, what: str) -> dict:
    """``a``, ``b``: ``[S, 1 + B]`` bootstrap AP of the two arms per seed."""
    d = paired_difference(a.mean(0), b.mean(0))
    per_seed = (a[:, 0] - b[:, 0]).tolist()
    return {**d, "seeds": seeds, "per_seed": per_seed, "a": a[:, 0].tolist(), "b": b[:, 0].tolist(),
            "objects": kind, "what": what, "seeds_agree": len({float(np.sign(x)) for x in per_seed}) == 1}


# ----------------------------------------------------------------------------- the page's tables


def _list_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines += [f"   * - {row[0]}"] + [f"     - {c}" for c in row[1:]]
    return "\n".join(lines) + "\n"


def _ms(stat: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    if stat is None:
        return "–"
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['spread'] * scale:.{digits}f}"


def runs_table(result: dict) -> str:
    rows = []
    for name, s in result["summary"].items():
        rows.append([f"``{name}``", str(s["train_classes"]), str(s["epochs"]), str(len(s["seeds"])),
                     *(_ms(s.get(k)) for k in ("AP", "AP50", "objectness_AP_all", "objectness_AP_held_out",
                                                "objectness_AP50_held_out", "held_out_AP")),
                     _ms(s.get("train_seconds"), 1, 0)])
    return _list_table("Every run: mean ± half the range over seeds (AP in %)",
                       ["run", "classes with boxes", "epochs", "seeds", "AP", "AP50", "objectness AP (all)",
                        "objectness AP (held-out)", "objectness AP50 (held-out)", "held-out AP after add_class",
                        "train s"], rows)


def comparisons_table(result: dict) -> str:
    """A direction holds where both the basic interval (stored) and the percentile interval (its reflection
    about the estimate) exclude zero: with AP's resampling bias the two can differ by several points."""
    rows = []
    for label, c in result["comparisons"].items():
        d, low, high = (100 * c[k] for k in ("difference", "low", "high"))
        p_low, p_high = 2 * d - high, 2 * d - low
        holds = (low > 0 or high < 0) and (p_low > 0 or p_high < 0)
        verdict = ("holds" if holds else "within noise") + ("" if c["seeds_agree"] else "; seeds differ in sign")
        rows.append([label, c["what"], "held-out objects (objectness)" if c["objects"] == "held_out" else
                     "classes with boxes", f"{d:+.1f}", f"[{low:+.1f}, {high:+.1f}]", f"[{p_low:+.1f}, {p_high:+.1f}]",
                     f"{100 * c['bootstrap_mean']:+.1f}", ", ".join(f"{100 * x:+.1f}" for x in c["per_seed"]), verdict])
    return _list_table(f"Paired differences of AP (points), A - B, seeds averaged; 95 % bootstrap intervals over "
                       f"{result['resamples']} resamples of the validation images",
                       ["A - B", "thesis", "AP on", "difference", "basic interval", "percentile interval",
                        "bootstrap mean", "per seed", "direction"], rows)


def nms_table(result: dict) -> str:
    rows = []
    for name in ("K5", "K25"):
        s = result["summary"].get(name, {}).get("nms_groups")
        if not s:
            continue
        for g in NMS_ARMS:
            rows.append([f"``{name}``", g, _ms(s[g]["AP"]), _ms(s[g]["AP50"]),
                         _ms(s[g]["postprocess_ms_per_image"], 1, 1)])
    return _list_table("NMS groups on the same trained detectors (Table 4.4): mean ± half the range over seeds",
                       ["detector", "NMS per", "AP", "AP50", "post-processing ms/image"], rows)


def rpn_table(result: dict) -> str:
    """Table 4.5: the objectness of one detector from its detection branch or from its RPN's scores."""
    rows = []
    for name, overlap in (("K1", "0.7 / 0.3"), ("K1_ov05", "0.5 / 0.4")):
        s = result["summary"].get(name)
        if not s or "rpn" not in s or "rpn_bbr" not in s:
            continue
        for arm, objectness, bbr in (("rpn", "RPN score", "no"), ("rpn_bbr", "RPN score", "yes")):
            rows.append([f"``{name}``", overlap, objectness, bbr, *(_ms(s[arm][k]) for k in ("AP", "AP50", "AP75"))])
        if name == "K1":
            rows.append(["``K1``", overlap, "detection branch (R-FCN-3000)", "yes", _ms(s["AP"]), _ms(s["AP50"]),
                         _ms(s.get("AP75"))])
    return _list_table("RPN scores as objectness (Table 4.5): AP of the known classes in %, mean ± half the range "
                       "over seeds", ["detector", "RPN overlap (positive / negative)", "objectness", "box regression",
                                      "AP", "AP50", "AP75"], rows)


def speed_table(result: dict) -> str:
    rows = [[f"{r['classes']:,}", r["head"], str(r["threads"]), f"{r['images_per_s']:.2f}",
             f"{r['head_forward_ms']:.1f}", f"{r['postprocess_ms']:.1f}", f"{r['parameters_M']:.1f}"]
            for r in result.get("speed") or []]
    return _list_table("Randomly initialised detectors, one 128 x 128 image at a time",
                       ["classes", "head", "threads", "detector images/s", "head forward ms",
                        "post-processing ms", "parameters (M)"], rows)


def page_tables(result: dict) -> str:
    """Every table of the page, in its order (the page holds this text verbatim)."""
    parts = [runs_table(result), comparisons_table(result), nms_table(result)]
    if any("rpn" in s for s in result["summary"].values()):
        parts.append(rpn_table(result))
    if result.get("speed"):
        parts.append(speed_table(result))
    return "\n".join(parts)


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def superclass_table(diag: dict) -> str:
    """``superclass_diagnosis.py``'s JSON: agreement of K-means clusters with the families, colours, textures."""
    rows = []
    for key, s in diag["summary"].items():
        source, _, detail = key.partition("_")
        what = ("class-mean 8 x 8 thumbnails of the crops" if source == "pixels" else
                f"classifier features, trained {detail.split('_')[0][:-2]} epochs")
        rows.append([what, detail.split("_")[-1] if source != "pixels" else detail,
                     _ms(s.get("train_accuracy"), 100, 0) if "train_accuracy" in s else "–",
                     *(f"{s[m]['mean']:+.2f} ± {s[m]['spread']:.2f}" for m in ("family", "colour", "texture"))])
    return _list_table(f"K-means clusters (K = the 5 families) against the classes' attributes: adjusted Rand "
                       f"index, mean ± half the range over seeds {', '.join(map(str, diag['seeds']))}",
                       ["features", "crops", "classifier train accuracy (%)", "ARI vs family (shape)",
                        "ARI vs colour", "ARI vs texture"], rows)


def two_scale_table(result: dict) -> str:
    """``two_scale.py``'s JSON: AP of the K1 detectors at one and two scales, and the paired difference."""
    c = result["two - one"]
    d, low, high = (100 * c[k] for k in ("difference", "low", "high"))
    holds = (low > 0 or high < 0) and (2 * d - high > 0 or 2 * d - low < 0)
    return _list_table(f"K1 detectors at one scale (128) and two (128 + 256), seeds "
                       f"{', '.join(map(str, result['seeds']))}; AP in %, difference with 95 % bootstrap intervals",
                       ["one scale", "two scales", "difference", "basic interval", "percentile interval", "per seed",
                        "direction"],
                       [[", ".join(f"{100 * x:.1f}" for x in result["AP_one_scale"]),
                         ", ".join(f"{100 * x:.1f}" for x in result["AP_two_scales"]), f"{d:+.1f}",
                         f"[{low:+.1f}, {high:+.1f}]", f"[{2 * d - high:+.1f}, {2 * d - low:+.1f}]",
                         ", ".join(f"{100 * x:+.1f}" for x in c["per_seed"]), "holds" if holds else "within noise"]])
