"""ONNX export of the compiled ops through the default exporter
(``torch.onnx.export(..., dynamo=True)``), as ONNX-standard operators that ONNX
Runtime runs — no custom domain, no runtime plug-in.

=========================  ======================================================
op                         ONNX (opset 19)
=========================  ======================================================
``nms``, ``batched_nms``   ``NonMaxSuppression`` (categories as its classes,
                           ``Unique`` maps any ``idxs`` to 0..C-1), then ``TopK``
                           to restore the decreasing-score order
``soft_nms`` (+ batched)   a ``Loop`` of one selection per iteration (argmax,
                           IoU row, decay), O(N) work per kept box
``ps_roi_align``           ``RoiAlign`` over all channels, then each bin's own
                           channel gathered (the position-sensitive step)
``ps_roi_pool``            integral image (``CumSum`` in float64) and one
                           4-corner ``Gather`` per bin
``deform_conv2d``          ``DeformConv`` (opset 19)
``deform_ps_roi_pool``     not exported (a clear error): its sub-bin sampling has
                           no standard-operator form short of ``GridSample`` per bin
=========================  ======================================================

onnxscript (a dependency of the exporter) is imported only when the table is built.
"""

from __future__ import annotations

import math

import torch

__all__ = ["onnx_translation_table", "export_onnx", "ONNX_OPSET"]

# DeformConv entered the standard in opset 19.
ONNX_OPSET = 19


def _require_onnxscript():
    try:
        import onnxscript  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export needs the 'onnx' and 'onnxscript' packages (pip install onnx onnxscript; "
                          "onnxruntime to run the result)") from exc
    from onnxscript import opset18, opset19
    return opset18, opset19


def _static(value, what: str) -> int:
    if not isinstance(value, int):
        raise ValueError(f"ONNX export of scalekit ops needs a static {what}, got {value!r}")
    return value


def _translations():
    op, op19 = _require_onnxscript()
    from scalekit.ops._onnx_loop import soft_nms_loop

    def i64(values):
        return op.Constant(value_ints=list(values))

    def f64(value: float):
        import onnx
        return op.Constant(value=onnx.helper.make_tensor("f64", onnx.TensorProto.DOUBLE, [], [float(value)]))

    def corners(boxes, pixel_offset: float):
        """x1, y1, x2, y2 as [N] each; the "+1" convention is IoU of boxes grown by ``pixel_offset``."""
        x1 = op.Squeeze(op.Slice(boxes, i64([0]), i64([1]), i64([1])), i64([1]))
        y1 = op.Squeeze(op.Slice(boxes, i64([1]), i64([2]), i64([1])), i64([1]))
        x2 = op.Squeeze(op.Slice(boxes, i64([2]), i64([3]), i64([1])), i64([1]))
        y2 = op.Squeeze(op.Slice(boxes, i64([3]), i64([4]), i64([1])), i64([1]))
        return x1, y1, x2, y2

    # ------------------------------------------------------------------ NMS
    def nms(boxes, scores, idxs, iou_threshold: float, pixel_offset: float):
        b = op.Cast(boxes, to=1)  # NonMaxSuppression takes float32
        s = op.Cast(scores, to=1)
        if pixel_offset:
            b = op.Add(b, op.Constant(value_floats=[0.0, 0.0, float(pixel_offset), float(pixel_offset)]))
        n = op.Shape(b, start=0, end=1)
        if idxs is None:
            cls_scores = op.Unsqueeze(s, i64([0, 1]))  # [1, 1, N]
        else:
            # Any category values -> 0..C-1; a box scores -inf (never selected) outside its category.
            unique, _, inverse, _ = op.Unique(idxs, sorted=1)
            num = op.Shape(unique, start=0, end=1)
            rng = op.Range(op.Constant(value_int=0), op.Squeeze(num, i64([0])), op.Constant(value_int=1))
            member = op.Equal(op.Unsqueeze(rng, i64([1])), op.Unsqueeze(inverse, i64([0])))  # [C, N]
            neg_inf = op.Constant(value_float=-math.inf)
            cls_scores = op.Unsqueeze(op.Where(member, op.Unsqueeze(s, i64([0])), neg_inf), i64([0]))
        thr = op.Constant(value_floats=[float(iou_threshold)])
        floor = op.Constant(value_floats=[-3.4028234663852886e38])  # excludes -inf, keeps every finite score
        sel = op.NonMaxSuppression(op.Unsqueeze(b, i64([0])), cls_scores, n, thr, floor)
        keep = op.Squeeze(op.Slice(sel, i64([2]), i64([3]), i64([1])), i64([1]))
        # NonMaxSuppression lists by category, then score: restore the decreasing-score order.
        kept_scores = op.Gather(s, keep)
        _, order = op.TopK(kept_scores, op.Shape(keep), largest=1, sorted=1)
        return op.Gather(keep, order)

    # ------------------------------------------------------------- Soft-NMS
    def soft_nms(boxes, scores, idxs, iou_threshold: float, sigma: float, score_threshold: float, method: str,
                 pixel_offset: float):
        s = op.Cast(scores, to=1)
        cats = op.Cast(idxs, to=7) if idxs is not None else op.Cast(op.Less(s, s), to=7)  # one category: zeros
        keep, kept = soft_nms_loop(op.Cast(boxes, to=1), s, cats, iou_threshold=float(iou_threshold),
                                   sigma=float(sigma), score_threshold=float(score_threshold),
                                   pixel_offset=float(pixel_offset), gaussian=float(method == "gaussian"),
                                   hard=float(method == "hard"))
        return keep, op.CastLike(kept, scores)

    # --------------------------------------------------- position-sensitive
    def ps_diagonal(pooled, ph: int, pw: int):
        """[K, C * ph * pw, ph, pw] -> [K, C, ph, pw]: bin (i, j) from channel c * ph * pw + i * pw + j."""
        bins = ph * pw
        x = op.Reshape(pooled, i64([0, -1, bins, bins]))
        eye = op.Constant(value=_eye(bins))
        picked = op.ReduceSum(op.Mul(x, op.CastLike(eye, x)), i64([2]), keepdims=0)
        return op.Reshape(picked, i64([0, -1, ph, pw]))

    def ps_roi_align(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int,
                     sampling_ratio: int, aligned: bool):
        batch = op.Cast(op.Squeeze(op.Slice(rois, i64([0]), i64([1]), i64([1])), i64([1])), to=7)
        boxes = op.Slice(rois, i64([1]), i64([5]), i64([1]))
        pooled = op.RoiAlign(input, op.CastLike(boxes, input), batch, mode="avg",
                             output_height=pooled_height, output_width=pooled_width,
                             sampling_ratio=max(int(sampling_ratio), 0), spatial_scale=float(spatial_scale),
                             coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel")
        return ps_diagonal(pooled, pooled_height, pooled_width)

    def round_half_away(v):
        return op.Mul(op.Sign(v), op.Floor(op.Add(op.Abs(v), f64(0.5))))

    def ps_roi_pool(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int):
        ph, pw = int(pooled_height), int(pooled_width)
        x = op.Cast(input, to=11)  # float64: the integral image keeps every pixel's digits
        ii = op.CumSum(op.CumSum(x, op.Constant(value_int=2)), op.Constant(value_int=3))
        ii = op.Pad(ii, i64([0, 0, 1, 1, 0, 0, 0, 0]))  # [N, Cin, H + 1, W + 1], zero row and column first
        shape = op.Shape(input)
        cin = op.Slice(shape, i64([1]), i64([2]))
        h = op.Slice(shape, i64([2]), i64([3]))
        w = op.Slice(shape, i64([3]), i64([4]))
        r = op.Cast(rois, to=11)
        col = [op.Slice(r, i64([c]), i64([c + 1]), i64([1])) for c in range(5)]  # [K, 1] each
        scale = f64(float(spatial_scale))
        sw, sh, ew, eh = (round_half_away(op.Mul(col[c], scale)) for c in (1, 2, 3, 4))
        one = f64(1.0)
        rw = op.Max(op.Sub(ew, sw), one)
        rh = op.Max(op.Sub(eh, sh), one)
        iy = op.Cast(op.Range(op.Constant(value_int=0), op.Constant(value_int=ph), op.Constant(value_int=1)), to=11)
        ix = op.Cast(op.Range(op.Constant(value_int=0), op.Constant(value_int=pw), op.Constant(value_int=1)), to=11)
        bh = op.Div(rh, f64(float(ph)))
        bw = op.Div(rw, f64(float(pw)))
        hf, wf = op.Cast(h, to=11), op.Cast(w, to=11)
        zero = f64(0.0)
        hs = op.Clip(op.Add(op.Floor(op.Mul(iy, bh)), sh), zero, hf)  # [K, ph]
        he = op.Clip(op.Add(op.Ceil(op.Mul(op.Add(iy, one), bh)), sh), zero, hf)
        ws = op.Clip(op.Add(op.Floor(op.Mul(ix, bw)), sw), zero, wf)  # [K, pw]
        we = op.Clip(op.Add(op.Ceil(op.Mul(op.Add(ix, one), bw)), sw), zero, wf)
        # Linear index into the flattened integral image of (batch, channel, y, x).
        bins = ph * pw
        c_out = op.Div(cin, op.Constant(value_ints=[bins]))
        cc = op.Range(op.Constant(value_int=0), op.Squeeze(c_out, i64([0])), op.Constant(value_int=1))
        chan = op.Add(op.Unsqueeze(op.Mul(cc, op.Constant(value_int=bins)), i64([1, 2])),
                      op.Constant(value=_bin_channels(ph, pw)))  # [C, ph, pw]
        b = op.Cast(col[0], to=7)  # [K, 1]
        plane = op.Mul(op.Add(h, op.Constant(value_ints=[1])), op.Add(w, op.Constant(value_ints=[1])))
        base = op.Mul(op.Add(op.Mul(op.Unsqueeze(b, i64([2, 3])), cin), op.Unsqueeze(chan, i64([0]))), plane)
        wp1 = op.Add(w, op.Constant(value_ints=[1]))

        def at(yy, xx):  # yy [K, ph], xx [K, pw] -> [K, C, ph, pw]
            y = op.Unsqueeze(op.Cast(yy, to=7), i64([1, 3]))
            xq = op.Unsqueeze(op.Cast(xx, to=7), i64([1, 2]))
            return op.Gather(op.Reshape(ii, i64([-1])), op.Add(base, op.Add(op.Mul(y, wp1), xq)))

        total = op.Add(op.Sub(op.Sub(at(he, we), at(hs, we)), at(he, ws)), at(hs, ws))
        count = op.Mul(op.Unsqueeze(op.Max(op.Sub(he, hs), zero), i64([1, 3])),
                       op.Unsqueeze(op.Max(op.Sub(we, ws), zero), i64([1, 2])))
        mean = op.Where(op.Greater(count, zero), op.Div(total, op.Max(count, one)), zero)
        return op.CastLike(mean, input)

    def deform_conv2d(input, weight, offset, mask, bias, stride_h: int, stride_w: int, pad_h: int, pad_w: int,
                      dilation_h: int, dilation_w: int, groups: int, offset_groups: int):
        kh, kw = _static(weight.shape[2], "kernel height"), _static(weight.shape[3], "kernel width")
        inputs = [input, weight, offset]
        if mask is not None:
            inputs += [bias if bias is not None else op.CastLike(
                op.ConstantOfShape(op.Slice(op.Shape(weight), i64([0]), i64([1]))), input), mask]
        elif bias is not None:
            inputs.append(bias)
        return op19.DeformConv(*inputs, dilations=[dilation_h, dilation_w], group=groups, offset_group=offset_groups,
                               kernel_shape=[kh, kw], pads=[pad_h, pad_w, pad_h, pad_w], strides=[stride_h, stride_w])

    def deform_ps_roi_pool(*args, **kwargs):
        raise NotImplementedError("scalekit.ops.deform_ps_roi_pool has no ONNX export: its deformed sub-bin sampling "
                                  "has no standard-operator form (see scalekit.ops.onnx_translation_table)")

    def greedy_nmm(*args, **kwargs):
        raise NotImplementedError("scalekit.ops.greedy_nmm has no ONNX export yet (non-maximum merging: its "
                                  "sequential re-check against the growing merged box has no translation here)")

    def nmm(*args, **kwargs):
        raise NotImplementedError("scalekit.ops.nmm has no ONNX export yet (non-maximum merging: its "
                                  "sequential re-check against the growing merged box has no translation here)")

    ops = torch.ops.scalekit
    return {ops.nms.default: nms, ops.soft_nms.default: soft_nms, ops.ps_roi_align.default: ps_roi_align,
            ops.ps_roi_pool.default: ps_roi_pool, ops.deform_conv2d.default: deform_conv2d,
            ops.deform_ps_roi_pool.default: deform_ps_roi_pool, ops.greedy_nmm.default: greedy_nmm,
            ops.nmm.default: nmm}


def _eye(n: int):
    import onnx
    import numpy as np
    return onnx.numpy_helper.from_array(np.eye(n, dtype=np.float32).reshape(1, 1, n, n), "eye")


def _bin_channels(ph: int, pw: int):
    import onnx
    import numpy as np
    return onnx.numpy_helper.from_array(np.arange(ph * pw, dtype=np.int64).reshape(1, ph, pw), "bin_channels")


def onnx_translation_table() -> dict:
    """ONNX translations of every ``torch.ops.scalekit`` op, for the default exporter.

    Pass it as ``custom_translation_table`` to ``torch.onnx.export(..., dynamo=True,
    opset_version=19)`` (opset 19: ``DeformConv``), or call :func:`export_onnx`,
    which does both. Each op becomes standard ONNX operators (see the table of
    :mod:`scalekit.ops._onnx` and the guide's export page); ``deform_ps_roi_pool``,
    ``greedy_nmm`` and ``nmm`` raise a clear error.

    Returns:
        ``{torch.ops.scalekit.<op>.default: onnxscript function}``.

    Example:
        >>> import torch
        >>> from scalekit.ops import onnx_translation_table
        >>> torch.ops.scalekit.nms.default in onnx_translation_table()
        True
    """
    return _translations()


def export_onnx(model: torch.nn.Module, args: tuple, path=None, **kwargs):
    """``torch.onnx.export(model, args, path, dynamo=True, opset_version=19)`` with
    scalekit's ops translated (:func:`onnx_translation_table`).

    Keyword arguments go to :func:`torch.onnx.export`; a ``custom_translation_table``
    given there is merged over scalekit's. Returns the ``ONNXProgram``.

    Example:
        >>> import torch, scalekit.ops as ops
        >>> class Keep(torch.nn.Module):
        ...     def forward(self, boxes, scores):
        ...         return ops.nms(boxes, scores, 0.5)
        >>> program = export_onnx(Keep(), (torch.tensor([[0., 0, 10, 10], [1, 1, 11, 11]]), torch.tensor([.9, .8])))
        >>> sorted({node.op_type for node in program.model_proto.graph.node} & {"NonMaxSuppression", "TopK"})
        ['NonMaxSuppression', 'TopK']
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple of the model's inputs, got {type(args).__name__}")
    opset = kwargs.get("opset_version", ONNX_OPSET)
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < ONNX_OPSET:
        raise ValueError(f"opset_version must be an int >= {ONNX_OPSET} (ONNX's DeformConv), got {opset!r}")
    table = dict(onnx_translation_table())
    table.update(kwargs.pop("custom_translation_table", None) or {})
    kwargs.setdefault("opset_version", ONNX_OPSET)
    kwargs.setdefault("verbose", False)
    if not kwargs.pop("dynamo", True):
        raise ValueError("export_onnx uses the default exporter (dynamo=True); the TorchScript exporter has no "
                         "translations of scalekit's ops")
    return torch.onnx.export(model, args, path, dynamo=True, custom_translation_table=table, **kwargs)
