"""Slow, obviously-correct references for position-sensitive RoI pooling, one
Python loop per (RoI, channel, bin), written from the definitions in the
docstrings. Values are built from differentiable torch ops, so autograd through
a reference gives the reference gradients (to the input and to the offsets)."""

from __future__ import annotations

import math

import torch


def round_half_away(v: float) -> int:
    """C++ std::round: .5 away from zero (Python's round() goes to even)."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _bilinear(plane, y, x, rule):
    """Bilinear sample of plane [H, W] at tensor coordinates y, x (0-d).

    rule "align": torchvision's (zero outside [-1, H]); "deform": skipped (None)
    outside [-0.5, H - 0.5]. Clamped coordinates carry no gradient."""
    h, w = plane.shape
    yv, xv = float(y.detach()), float(x.detach())
    if rule == "align":
        if not (-1 <= yv <= h and -1 <= xv <= w):
            return plane.new_zeros(())
    elif not (-0.5 <= yv <= h - 0.5 and -0.5 <= xv <= w - 0.5):
        return None

    def axis(c, cv, size):
        if cv <= 0:
            c, cv = c.detach() * 0, 0.0
        lo = int(cv)
        if lo >= size - 1:
            return size - 1, size - 1, c.detach() * 0
        return lo, lo + 1, c - lo

    y0, y1, ly = axis(y, yv, h)
    x0, x1, lx = axis(x, xv, w)
    return ((1 - ly) * (1 - lx) * plane[y0, x0] + (1 - ly) * lx * plane[y0, x1]
            + ly * (1 - lx) * plane[y1, x0] + ly * lx * plane[y1, x1])


def ref_ps_roi_pool(input, rois, ph, pw, spatial_scale):
    n_img, channels, h, w = input.shape
    c_out = channels // (ph * pw)
    out = input.new_zeros((len(rois), c_out, ph, pw))
    for k, roi in enumerate(rois.tolist()):
        n = int(roi[0])
        # the box * scale product rounds in the input's precision, as in the kernel
        sw, sh, ew, eh = (round_half_away(float(torch.tensor(v, dtype=input.dtype) * torch.tensor(spatial_scale, dtype=input.dtype)))
                          for v in roi[1:])
        rw, rh = max(ew - sw, 1), max(eh - sh, 1)
        bh = float(torch.tensor(rh, dtype=input.dtype) / ph)
        bw = float(torch.tensor(rw, dtype=input.dtype) / pw)
        for c in range(c_out):
            for i in range(ph):
                for j in range(pw):
                    def edge(m, b, f):  # f(m * b), the product rounded in the input's dtype
                        return f(float(torch.tensor(m, dtype=input.dtype) * torch.tensor(b, dtype=input.dtype)))

                    hs = min(max(edge(i, bh, math.floor) + sh, 0), h)
                    he = min(max(edge(i + 1, bh, math.ceil) + sh, 0), h)
                    ws = min(max(edge(j, bw, math.floor) + sw, 0), w)
                    we = min(max(edge(j + 1, bw, math.ceil) + sw, 0), w)
                    if he > hs and we > ws:
                        out[k, c, i, j] = input[n, (c * ph + i) * pw + j, hs:he, ws:we].mean()
    return out


def ref_ps_roi_align(input, rois, ph, pw, spatial_scale, sampling_ratio, aligned):
    channels, h, w = input.shape[1:]
    c_out = channels // (ph * pw)
    out = input.new_zeros((len(rois), c_out, ph, pw))
    half = 0.5 if aligned else 0.0
    for k, roi in enumerate(rois.tolist()):
        n = int(roi[0])
        x1, y1, x2, y2 = (v * spatial_scale - half for v in roi[1:])
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        gy = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / ph)
        gx = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pw)
        for c in range(c_out):
            for i in range(ph):
                for j in range(pw):
                    plane = input[n, (c * ph + i) * pw + j]
                    bh, bw = rh / ph, rw / pw  # sample positions in the kernel's order of operations
                    samples = [
                        _bilinear(plane, torch.tensor((i * bh + y1) + (iy + 0.5) * bh / gy, dtype=input.dtype),
                                  torch.tensor((j * bw + x1) + (ix + 0.5) * bw / gx, dtype=input.dtype), "align")
                        for iy in range(gy) for ix in range(gx)
                    ]
                    if samples:
                        out[k, c, i, j] = torch.stack(samples).mean()
    return out


def ref_deform_ps_roi_pool(input, rois, offset, ph, pw, spatial_scale, group, part, spp, trans_std):
    channels, h, w = input.shape[1:]
    gh, gw = group
    parth, partw = part
    c_out = channels // (gh * gw)
    out = input.new_zeros((len(rois), c_out, ph, pw))
    for k, roi in enumerate(rois.tolist()):
        n = int(roi[0])
        x1, y1, x2, y2 = (v * spatial_scale - 0.5 for v in roi[1:])
        rw, rh = max(x2 - x1, 0.1), max(y2 - y1, 0.1)
        for c in range(c_out):
            for i in range(ph):
                for j in range(pw):
                    pi, pj = i * parth // ph, j * partw // pw
                    dx = offset[k, 0, pi, pj] * (trans_std * rw) if offset is not None else 0.0
                    dy = offset[k, 1, pi, pj] * (trans_std * rh) if offset is not None else 0.0
                    bh, bw = rh / ph, rw / pw
                    plane = input[n, (c * gh + i * gh // ph) * gw + j * gw // pw]
                    samples = []
                    for iy in range(spp):
                        for ix in range(spp):
                            y = (i * bh + y1 + dy) + (iy + 0.5) * bh / spp
                            x = (j * bw + x1 + dx) + (ix + 0.5) * bw / spp
                            y, x = torch.as_tensor(y, dtype=input.dtype), torch.as_tensor(x, dtype=input.dtype)
                            v = _bilinear(plane, y, x, "deform")
                            if v is not None:
                                samples.append(v)
                    if samples:
                        out[k, c, i, j] = torch.stack(samples).mean()
    return out
