"""The report of ``autofocus.py``: issue 26's targets judged from the figures, the RST table and verdicts
that docs/guide/autofocus.rst holds (tests/examples/test_autofocus.py checks the page against the JSON)."""


def targets(modes) -> dict:
    """Issue 26's targets, judged for every AutoFocus setting."""
    out, p, s = {}, modes["pyramid"], modes.get("sahi")
    for name, m in modes.items():
        if name.startswith("autofocus"):
            t = {"vs_pyramid": (p["AP"] - m["AP"] <= 0.01 and p["APs"] - m["APs"] <= 0.015
                                and m["pixels_vs_pyramid"] <= 0.4)}
            if s is not None:
                t["vs_sahi"] = m["APs"] >= s["APs"] and m["pixels_vs_pyramid"] <= 0.5 * s["pixels_vs_pyramid"]
            out[name] = t
    return out


def table(result, factors) -> str:
    """The results as an RST list-table (the docs page holds exactly this); ``factors``: the scales, coarsest first."""
    scales = " / ".join(f"{f:g}x" for f in factors)
    rows = [["mode", "AP", "AP_small", "AP_medium", "AP_large", "Mpx / image", "pixels vs pyramid",
             f"pixels per scale ({scales})", "focus recall", "s / image"]]
    for name, m in result["modes"].items():
        per_scale = m.get("pixel_fraction_per_scale", [1.0] * len(factors) if name == "pyramid" else None)
        rows.append([f"``{name}``", f"{100 * m['AP']:.1f}", f"{100 * m['APs']:.1f}", f"{100 * m['APm']:.1f}",
                     f"{100 * m['APl']:.1f}", f"{m['megapixels_per_image']:.2f}", f"{m['pixels_vs_pyramid']:.2f}",
                     "slices at 1x" if per_scale is None else " / ".join(f"{f:.2f}" for f in per_scale),
                     "-" if m["focus_recall"] is None else f"{m['focus_recall']:.3f}", f"{m['seconds_per_image']:.2f}"])
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in rows:
        lines += ["   * - " + row[0]] + [f"     - {c}" for c in row[1:]]
    return "\n".join(lines) + "\n"


def verdicts(result) -> str:
    """Issue 26's targets for each AutoFocus setting, one RST bullet each (the docs page holds exactly this)."""
    modes, lines = result["modes"], []
    p, s = modes["pyramid"], modes.get("sahi")
    word = {True: "**met**", False: "**not met**"}
    for name, t in result["targets"].items():
        m = modes[name]
        line = (f"* ``{name}``: {100 * (m['AP'] - p['AP']):+.1f} AP and {100 * (m['APs'] - p['APs']):+.1f} AP_small "
                f"against the full pyramid at {m['pixels_vs_pyramid']:.2f} of its pixels: {word[t['vs_pyramid']]}")
        if s is not None:
            line += (f"; AP_small {100 * m['APs']:.1f} against SAHI's {100 * s['APs']:.1f} at "
                     f"{m['pixels_vs_pyramid'] / s['pixels_vs_pyramid']:.2f}x SAHI's pixels: {word[t['vs_sahi']]}")
        lines.append(line + ".")
    return "\n".join(lines) + "\n"
