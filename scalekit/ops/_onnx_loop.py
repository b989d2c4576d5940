"""Soft-NMS as an ONNX ``Loop`` (onnxscript): one selection per iteration. Imported
only by :mod:`scalekit.ops._onnx` when an export asks for it (onnxscript needs its
types at module level)."""

import math

from onnxscript import FLOAT, INT64, script
from onnxscript import opset18 as op


@script(default_opset=op)
def soft_nms_loop(boxes: FLOAT, scores: FLOAT, cats: INT64, iou_threshold: float, sigma: float,
                  score_threshold: float, pixel_offset: float, gaussian: float, hard: float) -> tuple[INT64, FLOAT]:
    x1 = op.Gather(boxes, op.Constant(value_int=0), axis=1)
    y1 = op.Gather(boxes, op.Constant(value_int=1), axis=1)
    x2 = op.Gather(boxes, op.Constant(value_int=2), axis=1)
    y2 = op.Gather(boxes, op.Constant(value_int=3), axis=1)
    off = op.Constant(value_float=pixel_offset)
    area = (x2 - x1 + off) * (y2 - y1 + off)
    thr = op.Constant(value_float=score_threshold)
    nt = op.Constant(value_float=iou_threshold)
    sg = op.Constant(value_float=sigma)
    is_gauss = op.Constant(value_float=gaussian) > op.Constant(value_float=0.5)
    is_hard = op.Constant(value_float=hard) > op.Constant(value_float=0.5)
    zero = op.Constant(value_float=0.0)
    one = op.Constant(value_float=1.0)
    neg_inf = op.Constant(value_float=-math.inf)
    n = op.Size(scores)
    index = op.Range(op.Constant(value_int=0), n, op.Constant(value_int=1))
    alive = op.Not(op.Less(scores, thr))
    s = scores
    keep = op.Slice(op.Constant(value_ints=[0]), op.Constant(value_ints=[0]), op.Constant(value_ints=[0]))
    kept = op.Slice(op.Constant(value_floats=[0.0]), op.Constant(value_ints=[0]), op.Constant(value_ints=[0]))
    going = op.ReduceMax(op.Cast(alive, to=1), keepdims=0) > zero
    while going:
        i = op.ArgMax(op.Where(alive, s, neg_inf), keepdims=1)  # first maximum: ties go to the lower index
        keep = op.Concat(keep, i, axis=0)
        kept = op.Concat(kept, op.Gather(s, i), axis=0)
        w = op.Max(op.Min(op.Gather(x2, i), x2) - op.Max(op.Gather(x1, i), x1) + off, zero)
        h = op.Max(op.Min(op.Gather(y2, i), y2) - op.Max(op.Gather(y1, i), y1) + off, zero)
        inter = w * h
        iou = inter / (op.Gather(area, i) + area - inter)
        alive = op.And(alive, op.Not(op.Equal(index, i)))
        live = op.And(alive, op.Equal(cats, op.Gather(cats, i)))
        hit = op.And(live, op.Or(op.And(is_gauss, iou > zero), op.And(op.Not(is_gauss), iou > nt)))
        weight = op.Where(is_gauss, op.Exp(op.Neg(iou * iou) / sg), one - iou)
        s = op.Where(op.And(hit, op.Not(is_hard)), s * weight, s)
        dropped = op.And(hit, op.Or(is_hard, op.Less(s, thr)))
        alive = op.And(alive, op.Not(dropped))
        going = op.ReduceMax(op.Cast(alive, to=1), keepdims=0) > zero
    return keep, kept

