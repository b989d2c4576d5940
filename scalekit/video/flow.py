"""Optical-flow backends behind one interface: ``flow(frame_a, frame_b) -> [2, H, W]``,
the ``(dx, dy)`` by which each pixel of ``frame_a`` moves to reach ``frame_b``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from scalekit._args import integer

__all__ = ["FlowEstimator", "TorchFlow", "OpenCVFlow"]

MAX_ITERATIONS = 1000  # TorchFlow: Gauss-Newton steps per level at most (a step moves at most a pixel)


class FlowEstimator:
    """Interface: ``estimator(frame_a, frame_b)`` with ``[C, H, W]`` or ``[H, W]``
    frames returns ``[2, H, W]`` float32 flow ``(dx, dy)`` from a to b.

    The backends here read ``[C, H, W]`` with ``C`` 1 or 3 (averaged to gray),
    ``[H, W]``, or channels-last ``[H, W, C]`` when the first dimension is not
    1 or 3; both frames must have the same size, at least 2 x 2, and finite
    values (a NaN frame is an error, not NaN flow)."""

    def __call__(self, frame_a: Tensor, frame_b: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def _gray(frame: Tensor, name: str = "frame") -> Tensor:
    frame = torch.as_tensor(frame)
    if frame.is_complex() or frame.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got {frame.dtype}")
    frame = frame.float()
    if frame.dim() == 3:
        if frame.shape[0] in (1, 3):
            frame = frame.mean(0)
        elif frame.shape[-1] in (1, 3):
            frame = frame.mean(-1)
        else:
            raise ValueError(f"{name} must be [C, H, W] or [H, W, C] with C 1 or 3, or [H, W], got {list(frame.shape)}")
    if frame.dim() != 2:
        raise ValueError(f"{name} must be [C, H, W] or [H, W], got {list(frame.shape)}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise ValueError(f"{name} must be at least 2 x 2 pixels, got {list(frame.shape)}")
    if not torch.isfinite(frame).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return frame


def _pair(frame_a, frame_b) -> tuple[Tensor, Tensor]:
    a, b = _gray(frame_a, "frame_a"), _gray(frame_b, "frame_b")
    if a.shape != b.shape:
        raise ValueError(f"frame_a and frame_b must have the same size, got {list(a.shape)} and {list(b.shape)}")
    return a, b


def _warp(image: Tensor, flow: Tensor) -> Tensor:
    """Sample image [H, W] at x + flow (bilinear, border replicate)."""
    h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    gx = (xs + flow[0]) / max(w - 1, 1) * 2 - 1
    gy = (ys + flow[1]) / max(h - 1, 1) * 2 - 1
    grid = torch.stack([gx, gy], -1)[None]
    return F.grid_sample(image[None, None], grid, align_corners=True, padding_mode="border")[0, 0]


class TorchFlow(FlowEstimator):
    """Dense pyramidal Lucas-Kanade in pure PyTorch: the dependency-free backend.

    Good for tests and small motions on textured frames, not a replacement for
    DIS or RAFT. Per pyramid level (coarse to fine), ``iterations`` Gauss-Newton
    steps of the brightness-constancy equations summed over a ``window`` box
    (odd; at most 1,000 iterations, each moving the flow by at most a pixel).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 64, 64, generator=g), 5, 1, 2)[0, 0]
        >>> b = torch.roll(a, shifts=(0, 2), dims=(0, 1))  # content moves 2 px right
        >>> flow = TorchFlow()(a, b)
        >>> round(flow[0, 16:48, 16:48].median().item())
        2
    """

    def __init__(self, levels: int = 3, iterations: int = 5, window: int = 9) -> None:
        self.levels = integer("levels", levels, minimum=1)
        self.iterations = integer("iterations", iterations, minimum=1)
        if self.iterations > MAX_ITERATIONS:
            raise ValueError(f"iterations must be <= {MAX_ITERATIONS} (each step moves the flow by at most a pixel), "
                             f"got {iterations}")
        self.window = integer("window", window, minimum=1)
        if self.window % 2 == 0:
            raise ValueError(f"window must be odd (a box centred on each pixel), got {window}")

    def __repr__(self) -> str:
        return f"TorchFlow(levels={self.levels}, iterations={self.iterations}, window={self.window})"

    def __call__(self, frame_a: Tensor, frame_b: Tensor) -> Tensor:
        a, b = _pair(frame_a, frame_b)
        mean, std = a.mean(), a.std().clamp(min=1e-6)  # brightness scale does not matter
        a, b = (a - mean) / std, (b - mean) / std
        pyramid = [(a, b)]
        for _ in range(self.levels - 1):
            if min(pyramid[-1][0].shape) < 16:
                break
            pyramid.append(tuple(F.avg_pool2d(x[None, None], 2)[0, 0] for x in pyramid[-1]))
        flow = torch.zeros(2, *pyramid[-1][0].shape)
        for level, (a_l, b_l) in enumerate(reversed(pyramid)):
            if level > 0:
                flow = F.interpolate(flow[None], size=a_l.shape, mode="bilinear", align_corners=False)[0] * 2
            gy, gx = torch.gradient(a_l)
            # A window wider than twice the frame covers the whole frame from every pixel: the same sums, bounded work.
            win = min(self.window, 2 * max(a_l.shape) + 1)
            box = lambda x: F.avg_pool2d(x[None, None], win, 1, win // 2, count_include_pad=False)[0, 0]  # noqa: E731
            sxx, syy, sxy = box(gx * gx), box(gy * gy), box(gx * gy)
            det = sxx * syy - sxy * sxy
            ok = det > 1e-4 * (sxx + syy).square()  # well-conditioned windows only (no aperture problem)
            for _ in range(self.iterations):
                it = _warp(b_l, flow) - a_l
                bx, by = box(gx * it), box(gy * it)
                du = torch.where(ok, -(syy * bx - sxy * by) / det.clamp(min=1e-6), torch.zeros_like(bx))
                dv = torch.where(ok, -(sxx * by - sxy * bx) / det.clamp(min=1e-6), torch.zeros_like(by))
                flow = flow + torch.stack([du, dv]).clamp(-1, 1)  # damped: at most a pixel per step
        return flow.float()


class OpenCVFlow(FlowEstimator):
    """OpenCV dense flow: DIS (default, fast) or Farneback.

    Needs ``opencv-python-headless`` (``pip install opencv-python-headless``; scalekit's ``video`` extra).
    """

    def __init__(self, method: str = "dis") -> None:
        try:
            import cv2
        except ImportError as exc:
            raise ImportError("OpenCVFlow needs OpenCV: pip install opencv-python-headless "
                              "(scalekit's `video` extra)") from exc
        if method not in ("dis", "farneback"):
            raise ValueError(f"method must be 'dis' or 'farneback', got {method!r}")
        self.cv2, self.method = cv2, method
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None

    def __repr__(self) -> str:
        return f"OpenCVFlow(method={self.method!r})"

    def __call__(self, frame_a: Tensor, frame_b: Tensor) -> Tensor:
        def u8(g):
            g = g * 255 if g.max() <= 1.0 else g
            return g.clamp(0, 255).byte().numpy()

        a, b = (u8(g) for g in _pair(frame_a, frame_b))
        if self.method == "dis":
            flow = self._dis.calc(a, b, None)
        else:
            flow = self.cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return torch.from_numpy(flow).permute(2, 0, 1).float()
