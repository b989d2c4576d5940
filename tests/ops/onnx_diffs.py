"""The largest difference between each op and its ONNX export run in ONNX Runtime, at
sizes larger than the tests use (the figures of docs/guide/export.rst)::

    python -m tests.ops.onnx_diffs
"""

import torch

import scalekit.ops as ops
from tests.ops.test_onnx import Fn, random_boxes, rois, run_onnx


def nms_rows() -> dict:
    boxes, scores = random_boxes(2000, 0)
    cases = {"nms": (Fn(lambda b, s: ops.nms(b, s, 0.5)), (boxes, scores)),
             "batched_nms": (Fn(lambda b, s, i: ops.batched_nms(b, s, i, 0.5)),
                             (boxes, scores, torch.arange(2000) % 80))}
    rows = {}
    for name, (fn, args) in cases.items():
        (keep,) = run_onnx(fn, args)
        ref = fn(*args)
        rows[name] = f"same indices: {torch.equal(keep, ref)} ({len(ref)} kept of 2,000)"
    boxes, scores = random_boxes(500, 2, scale=60.0)
    for method in ("linear", "gaussian", "hard"):
        fn = Fn(lambda b, s, m=method: ops.soft_nms(b, s, 0.3, 0.5, 0.001, m))
        keep, kept = run_onnx(fn, (boxes, scores))
        ref_keep, ref_kept = fn(boxes, scores)
        rows[f"soft_nms {method}"] = (f"same indices: {torch.equal(keep, ref_keep)} ({len(ref_keep)} kept of 500), "
                                      f"max |score diff| {float((kept - ref_kept).abs().max()):.1e}")
    return rows


def pooling_rows() -> dict:
    x = torch.randn(2, 10 * 49, 32, 32, generator=torch.Generator().manual_seed(0))
    r = rois(300, 4, size=512.0)
    rows = {}
    for aligned in (False, True):
        fn = Fn(lambda x, r, a=aligned: ops.ps_roi_align(x, r, 7, 1 / 16, sampling_ratio=-1, aligned=a))
        (out,) = run_onnx(fn, (x, r))
        rows[f"ps_roi_align aligned={aligned}"] = f"max |diff| {float((out - fn(x, r)).abs().max()):.1e}"
    fn = Fn(lambda x, r: ops.ps_roi_pool(x, r, 7, 1 / 16))
    (out,) = run_onnx(fn, (x, r))
    rows["ps_roi_pool"] = f"max |diff| {float((out - fn(x, r)).abs().max()):.1e}"
    torch.manual_seed(0)
    conv = ops.DeformConv2d(64, 64, 3, padding=1).eval()
    args = (torch.randn(2, 64, 32, 32), torch.randn(2, 18, 32, 32) * 3, torch.rand(2, 9, 32, 32))
    (out,) = run_onnx(conv, args)
    with torch.no_grad():
        ref = conv(*args)
    rows["deform_conv2d (v2)"] = f"max |diff| {float((out - ref).abs().max()):.1e} (outputs up to " \
                                 f"{float(ref.abs().max()):.1f})"
    return rows


def main() -> None:
    for name, row in {**nms_rows(), **pooling_rows()}.items():
        print(f"{name}: {row}")


if __name__ == "__main__":
    main()
