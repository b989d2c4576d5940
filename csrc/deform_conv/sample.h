// Deformable convolution's sampling, written once for the CPU and CUDA
// kernels, with torchvision's semantics: zero padding outside the map (a
// sample at or beyond one pixel outside reads 0; corners off the map read 0).
#pragma once

#include <torch/headeronly/macros/Macros.h>

#include <cstdint>
#include <limits>

namespace scalekit {
namespace deform_conv {

struct Geometry {
  int64_t channels, height, width;     // input
  int64_t out_h, out_w;                 // output
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t groups, offset_groups;
  bool use_mask;

  C10_HOST_DEVICE int64_t taps() const { return kernel_h * kernel_w; }
  C10_HOST_DEVICE int64_t pixels() const { return out_h * out_w; }
};

// The four corners of one bilinear sample: flat indices into the H x W plane
// (-1 where the corner is off the map) and the fractional position.
template <typename T>
struct Sample {
  int64_t idx[4];  // (y0, x0), (y0, x1), (y1, x0), (y1, x1)
  T ly, lx;
  // The sample reads the map (value and input gradient); outside it reads 0.
  // The corners are kept either way: like torchvision, the offset gradient
  // at a sample exactly one pixel off the map is the one-sided slope from the
  // corner that is on it.
  bool inside;
  // The position is NaN (a NaN offset): nothing is read, and the sample's
  // value and gradients are NaN, as a dense convolution propagates NaN input.
  // (An infinite offset is a position far off the map: it reads the zero
  // padding, value 0, gradient 0.)
  bool nan;

  C10_HOST_DEVICE T weight(int j) const {
    const T wy = (j < 2) ? T(1) - ly : ly;
    const T wx = (j & 1) ? lx : T(1) - lx;
    return wy * wx;
  }
};

// Sample of tap k at output pixel p, for the offsets (dy, dx) of that tap and pixel.
template <typename T>
C10_HOST_DEVICE inline Sample<T> make_sample(const Geometry& g, int64_t k, int64_t p, T dy, T dx) {
  const int64_t i = k / g.kernel_w, j = k % g.kernel_w;
  const int64_t y = p / g.out_w, x = p % g.out_w;
  const T h = static_cast<T>(y * g.stride_h - g.pad_h + i * g.dil_h) + dy;
  const T w = static_cast<T>(x * g.stride_w - g.pad_w + j * g.dil_w) + dx;
  Sample<T> s;
  s.nan = !(h == h) || !(w == w);
  // Comparisons are false for NaN, so NaN positions read nothing.
  s.inside = h > T(-1) && h < static_cast<T>(g.height) && w > T(-1) && w < static_cast<T>(g.width);
  const bool near = h > T(-2) && h < static_cast<T>(g.height + 1) && w > T(-2) && w < static_cast<T>(g.width + 1);
  if (!near) {  // no corner on the map (this also keeps the integer casts in range)
    s.idx[0] = s.idx[1] = s.idx[2] = s.idx[3] = -1;
    s.ly = s.lx = T(0);
    return s;
  }
  const T fy = ::floor(h), fx = ::floor(w);
  const int64_t y0 = static_cast<int64_t>(fy), x0 = static_cast<int64_t>(fx);
  const int64_t y1 = y0 + 1, x1 = x0 + 1;
  s.ly = h - fy, s.lx = w - fx;
  const bool vy0 = y0 >= 0 && y0 < g.height, vy1 = y1 >= 0 && y1 < g.height;
  const bool vx0 = x0 >= 0 && x0 < g.width, vx1 = x1 >= 0 && x1 < g.width;
  s.idx[0] = (vy0 && vx0) ? y0 * g.width + x0 : -1;
  s.idx[1] = (vy0 && vx1) ? y0 * g.width + x1 : -1;
  s.idx[2] = (vy1 && vx0) ? y1 * g.width + x0 : -1;
  s.idx[3] = (vy1 && vx1) ? y1 * g.width + x1 : -1;
  return s;
}

// Value of the sample on a plane, and its derivatives along y and x.
template <typename T, typename scalar_t>
C10_HOST_DEVICE inline void sample_value(const Sample<T>& s, const scalar_t* plane, T& v, T& dvdy, T& dvdx) {
  T c[4];
  for (int j = 0; j < 4; ++j) c[j] = s.idx[j] >= 0 ? static_cast<T>(plane[s.idx[j]]) : T(0);
  const T hy = T(1) - s.ly, hx = T(1) - s.lx;
  v = hy * hx * c[0] + hy * s.lx * c[1] + s.ly * hx * c[2] + s.ly * s.lx * c[3];
  dvdy = hx * (c[2] - c[0]) + s.lx * (c[3] - c[1]);
  dvdx = hy * (c[1] - c[0]) + s.ly * (c[3] - c[2]);
}

// NaN where the sample of a tap, scaled by its mask m, is NaN whatever the
// map holds: a NaN position, or a NaN or infinite mask (infinity times the
// zero padding); 0 otherwise. Added to the tap's value and used for its
// gradients, it turns them NaN without reading anything.
template <typename T>
C10_HOST_DEVICE inline T poison(const Sample<T>& s, T m) {
  return (s.nan || !(m - m == T(0))) ? std::numeric_limits<T>::quiet_NaN() : T(0);
}

// Offsets (dy, dx) and mask of tap k, pixel p, offset group og of one image.
// offset: [2 * offset_groups * taps, pixels]; mask: [offset_groups * taps, pixels] or null.
template <typename T, typename scalar_t>
C10_HOST_DEVICE inline void read_offset(const Geometry& g, const scalar_t* offset, const scalar_t* mask,
                                        int64_t og, int64_t k, int64_t p, T& dy, T& dx, T& m) {
  const int64_t row = og * g.taps() + k;
  dy = static_cast<T>(offset[(2 * row) * g.pixels() + p]);
  dx = static_cast<T>(offset[(2 * row + 1) * g.pixels() + p]);
  m = mask != nullptr ? static_cast<T>(mask[row * g.pixels() + p]) : T(1);
}

}  // namespace deform_conv
}  // namespace scalekit
