"""Fake (meta) kernels: output shapes and dtypes of every compiled op, so that
``torch.compile`` and ``torch.export`` trace through them. Registered only when
the compiled library is loaded (the schemas live there)."""

from __future__ import annotations

import torch


def _check_nms(boxes, scores, idxs) -> None:
    torch._check(boxes.dim() == 2 and boxes.shape[1] == 4, lambda: f"boxes must be [N, 4], got {boxes.shape}")
    torch._check(scores.dim() == 1 and scores.shape[0] == boxes.shape[0], lambda: "scores must be [N]")
    if idxs is not None:
        torch._check(idxs.dim() == 1 and idxs.shape[0] == boxes.shape[0], lambda: "idxs must be [N]")


def register() -> None:
    @torch.library.register_fake("scalekit::nms")
    def _nms_fake(boxes, scores, idxs, iou_threshold, pixel_offset):
        _check_nms(boxes, scores, idxs)
        kept = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty((kept,), dtype=torch.int64)

    @torch.library.register_fake("scalekit::soft_nms")
    def _soft_nms_fake(boxes, scores, idxs, iou_threshold, sigma, score_threshold, method, pixel_offset):
        _check_nms(boxes, scores, idxs)
        kept = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty((kept,), dtype=torch.int64), scores.new_empty((kept,))
