"""Fake (meta) kernels and autograd formulas of the compiled ops, registered in
Python (``torch.library``) as pytorch/extension-cpp does, so that
``torch.compile`` traces through every op. Registered only when the compiled
library (which declares the schemas) is loaded."""

from __future__ import annotations

import torch

_lib = "scalekit::"


def _check_nms(boxes, scores, idxs) -> None:
    torch._check(boxes.dim() == 2 and boxes.shape[1] == 4, lambda: f"boxes must be [N, 4], got {boxes.shape}")
    torch._check(scores.dim() == 1 and scores.shape[0] == boxes.shape[0], lambda: "scores must be [N]")
    if idxs is not None:
        torch._check(idxs.dim() == 1 and idxs.shape[0] == boxes.shape[0], lambda: "idxs must be [N]")


def _pooled(input, rois, ph, pw, groups):
    torch._check(input.dim() == 4, lambda: "input must be [N, C, H, W]")
    torch._check(rois.dim() == 2 and rois.shape[1] == 5, lambda: "boxes must be [K, 5]")
    torch._check(input.shape[1] % groups == 0, lambda: "input channels must be divisible by the groups")
    return input.new_empty((rois.shape[0], input.shape[1] // groups, ph, pw))


def register() -> None:
    # ---- NMS family: outputs of data-dependent size
    @torch.library.register_fake(_lib + "nms")
    def _nms(boxes, scores, idxs, iou_threshold, pixel_offset):
        _check_nms(boxes, scores, idxs)
        return boxes.new_empty((torch.library.get_ctx().new_dynamic_size(),), dtype=torch.int64)

    @torch.library.register_fake(_lib + "soft_nms")
    def _soft_nms(boxes, scores, idxs, iou_threshold, sigma, score_threshold, method, pixel_offset):
        _check_nms(boxes, scores, idxs)
        kept = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty((kept,), dtype=torch.int64), scores.new_empty((kept,))

    # ---- SNIPER's chip cover (scalekit.chips): as many picks as the data needs
    @torch.library.register_fake(_lib + "chip_cover")
    def _chip_cover(boxes, need, factors, xs, ys, x_offsets, y_offsets, chip, min_count):
        picks = torch.library.get_ctx().new_dynamic_size()
        return (boxes.new_empty((picks, 3), dtype=torch.int64), need.new_empty((picks, boxes.shape[0])),
                need.new_empty(need.shape))

    # ---- SAHI's non-maximum merging (greedy_nmm, nmm): as many keepers as the data leaves
    def _merge(boxes, scores, idxs, match_threshold, metric):
        _check_nms(boxes, scores, idxs)
        kept = torch.library.get_ctx().new_dynamic_size()
        return (boxes.new_empty((kept,), dtype=torch.int64), boxes.new_empty((kept, 4)), scores.new_empty((kept,)))

    torch.library.register_fake(_lib + "greedy_nmm", _merge)
    torch.library.register_fake(_lib + "nmm", _merge)

    # ---- ActivityNet results JSON (scalekit.evaluation._anet_results): sizes the file decides
    @torch.library.register_fake(_lib + "_anet_scan")
    def _anet_scan(data):
        torch._check(data.dim() == 1 and data.dtype == torch.uint8, lambda: "data must be uint8 [B]")
        ctx = torch.library.get_ctx()
        videos, labels, n = ctx.new_dynamic_size(), ctx.new_dynamic_size(), ctx.new_dynamic_size()
        i64, f64 = torch.int64, torch.float64
        return (data.new_empty((3,), dtype=i64), data.new_empty((videos,), dtype=i64),
                data.new_empty((videos, 2), dtype=i64), data.new_empty((labels, 2), dtype=i64),
                data.new_empty((n,), dtype=i64), data.new_empty((n, 2), dtype=f64), data.new_empty((n,), dtype=f64))

    # ---- position-sensitive RoI pooling
    @torch.library.register_fake(_lib + "ps_roi_pool")
    def _ps_roi_pool(input, rois, spatial_scale, ph, pw):
        return _pooled(input, rois, ph, pw, ph * pw)

    @torch.library.register_fake(_lib + "_ps_roi_pool_backward")
    def _ps_roi_pool_bwd(grad, rois, spatial_scale, ph, pw, n, c, h, w):
        return grad.new_empty((n, c, h, w))

    @torch.library.register_fake(_lib + "ps_roi_align")
    def _ps_roi_align(input, rois, spatial_scale, ph, pw, sampling_ratio, aligned):
        return _pooled(input, rois, ph, pw, ph * pw)

    @torch.library.register_fake(_lib + "_ps_roi_align_backward")
    def _ps_roi_align_bwd(grad, rois, spatial_scale, ph, pw, sampling_ratio, aligned, n, c, h, w):
        return grad.new_empty((n, c, h, w))

    @torch.library.register_fake(_lib + "deform_ps_roi_pool")
    def _deform(input, rois, offset, spatial_scale, ph, pw, gh, gw, parth, partw, spp, trans_std):
        return _pooled(input, rois, ph, pw, gh * gw)

    @torch.library.register_fake(_lib + "_deform_ps_roi_pool_backward")
    def _deform_bwd(grad, input, rois, offset, spatial_scale, ph, pw, gh, gw, parth, partw, spp, trans_std):
        return input.new_empty(input.shape), grad.new_empty((rois.shape[0], 2, parth, partw))

    # ---- autograd (gradients to the feature map and to the offsets, none to the boxes)
    def _setup(ctx, inputs, output):
        ctx.input_shape = inputs[0].shape
        ctx.args = inputs[2:]
        ctx.save_for_backward(inputs[1])

    def _ps_roi_pool_backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        gi = torch.ops.scalekit._ps_roi_pool_backward(grad, rois, *ctx.args, *ctx.input_shape)
        return (gi,) + (None,) * (1 + len(ctx.args))

    def _ps_roi_align_backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        gi = torch.ops.scalekit._ps_roi_align_backward(grad, rois, *ctx.args, *ctx.input_shape)
        return (gi,) + (None,) * (1 + len(ctx.args))

    torch.library.register_autograd(_lib + "ps_roi_pool", _ps_roi_pool_backward, setup_context=_setup)
    torch.library.register_autograd(_lib + "ps_roi_align", _ps_roi_align_backward, setup_context=_setup)

    def _deform_setup(ctx, inputs, output):
        input, rois, offset = inputs[:3]
        ctx.args = inputs[3:]
        ctx.has_offset = offset is not None
        ctx.save_for_backward(input, rois, offset)

    def _deform_backward(ctx, grad):
        input, rois, offset = ctx.saved_tensors
        gi, go = torch.ops.scalekit._deform_ps_roi_pool_backward(grad, input, rois, offset, *ctx.args)
        return (gi, None, go if ctx.has_offset else None) + (None,) * len(ctx.args)

    torch.library.register_autograd(_lib + "deform_ps_roi_pool", _deform_backward, setup_context=_deform_setup)

    # ---- deformable convolution
    def _out_size(size, k, s, p, d):
        return (size + 2 * p - d * (k - 1) - 1) // s + 1

    @torch.library.register_fake(_lib + "deform_conv2d")
    def _deform_conv(input, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, groups, offset_groups):
        torch._check(input.dim() == 4 and weight.dim() == 4, lambda: "input and weight must be 4-D")
        ho = _out_size(input.shape[2], weight.shape[2], sh, ph, dh)
        wo = _out_size(input.shape[3], weight.shape[3], sw, pw, dw)
        return input.new_empty((input.shape[0], weight.shape[0], ho, wo))

    @torch.library.register_fake(_lib + "_deform_conv2d_backward")
    def _deform_conv_bwd(grad, input, weight, offset, mask, bias, *args):
        return (input.new_empty(input.shape), weight.new_empty(weight.shape), offset.new_empty(offset.shape),
                mask.new_empty(mask.shape) if mask is not None else None,
                bias.new_empty(bias.shape) if bias is not None else None)

    def _conv_setup(ctx, inputs, output):
        input, weight, offset, mask, bias = inputs[:5]
        ctx.args = inputs[5:]
        ctx.save_for_backward(input, weight, offset, mask, bias)

    def _conv_backward(ctx, grad):
        input, weight, offset, mask, bias = ctx.saved_tensors
        gi, gw, go, gm, gb = torch.ops.scalekit._deform_conv2d_backward(grad, input, weight, offset, mask, bias, *ctx.args)
        return (gi, gw, go, gm if mask is not None else None, gb if bias is not None else None) + (None,) * len(ctx.args)

    torch.library.register_autograd(_lib + "deform_conv2d", _conv_backward, setup_context=_conv_setup)

    _register_autocast()


# ---- mixed precision: what torchvision's csrc/ops/autocast/ kernels do, in Python. Under
# torch.autocast every floating tensor argument except float64 is cast to float32, the op runs
# with autocast off, and floating results go back to the dtype of the argument they belong to
# (the features for pooling and convolution, the scores for Soft-NMS, boxes and scores for the merges;
# NMS indices stay int64).
# Boxes and RoIs therefore never follow the features into float16 or bfloat16.
_AUTOCAST_RESULT_DTYPE_FROM = {
    "nms": (None,),
    "soft_nms": (None, 1),
    "greedy_nmm": (None, 0, 1),
    "nmm": (None, 0, 1),
    "ps_roi_pool": (0,),
    "ps_roi_align": (0,),
    "deform_ps_roi_pool": (0,),
    "deform_conv2d": (0,),
}
_autocast_lib = None


def _to_float32(x):
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float64:
        return x.float()
    return x


def _autocast_kernel(op, result_dtype_from, key):
    off = torch._C.DispatchKeySet(key)

    def kernel(*args):
        with torch._C._ExcludeDispatchKeyGuard(off):
            out = op(*[_to_float32(a) for a in args])
        outs = out if isinstance(out, tuple) else (out,)
        outs = tuple(o if i is None else o.to(args[i].dtype) for o, i in zip(outs, result_dtype_from))
        return outs if isinstance(out, tuple) else outs[0]

    return kernel


def _register_autocast() -> None:
    global _autocast_lib
    _autocast_lib = torch.library.Library("scalekit", "IMPL")
    for name, result_dtype_from in _AUTOCAST_RESULT_DTYPE_FROM.items():
        op = getattr(torch.ops.scalekit, name).default
        for key in (torch._C.DispatchKey.AutocastCPU, torch._C.DispatchKey.AutocastCUDA):
            _autocast_lib.impl(name, _autocast_kernel(op, result_dtype_from, key), key.name)
