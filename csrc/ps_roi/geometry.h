// Where position-sensitive RoI ops sample, written once for the CPU and CUDA
// kernels of ps_roi_pool, ps_roi_align and deform_ps_roi_pool.
//
// Every bin of the three ops is separable: its value is
//     sum_i sum_j wy_i * wx_j * plane[row_i, col_j] / count,
// with taps (row_i, wy_i) along y and (col_j, wx_j) along x. An Axis lists the
// taps of one bin along one axis; `dw` is the derivative of a tap's weight
// with respect to a shift of the whole bin along that axis (deformable offsets).
#pragma once

#include <torch/headeronly/macros/Macros.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace scalekit {
namespace ps_roi {

enum class Mode : int { kPool, kAlign, kDeform };

template <typename T>
struct Params {
  Mode mode;
  T spatial_scale;
  int64_t height, width;                // input map
  int64_t pooled_h, pooled_w;           // output bins
  int64_t group_h, group_w;             // position-sensitive channel groups
  int64_t part_h, part_w;               // deformable offset grid
  int64_t sampling_ratio;               // align: samples per bin side (<= 0: adaptive)
  bool aligned;                         // align: half-pixel offset (torchvision's behaviour)
  int64_t sample_per_part;              // deform: samples per bin side
  T trans_std;                          // deform: offset scale
};

template <typename T>
struct Axis {
  Mode mode;
  T start;        // pool: first pixel; align/deform: bin start (continuous)
  T bin;          // align/deform: bin size
  int64_t n;      // pool: number of pixels; align/deform: samples
  int64_t extent; // map size along the axis

  C10_HOST_DEVICE int64_t size() const { return mode == Mode::kPool ? n : 2 * n; }

  // Sample position of sample s (align/deform), as torchvision computes it.
  C10_HOST_DEVICE T sample(int64_t s) const {
    return start + static_cast<T>(s + 0.5) * bin / static_cast<T>(n);
  }

  C10_HOST_DEVICE bool valid(T y) const {
    // Written as !(inside) so that NaN positions are invalid.
    if (mode == Mode::kAlign) return y >= T(-1) && y <= static_cast<T>(extent);
    return y >= T(-0.5) && y <= static_cast<T>(extent) - T(0.5);  // deform
  }

  // Number of samples that count in the average along this axis.
  C10_HOST_DEVICE int64_t count() const {
    if (mode != Mode::kDeform) return n;
    int64_t c = 0;
    for (int64_t s = 0; s < n; ++s) c += valid(sample(s)) ? 1 : 0;
    return c;
  }

  // Samples [*s0, *s1) are the only ones whose position, as sample()
  // computes it, can be valid(); the others are off the map. Computed in
  // double with a margin for T's rounding, so that a huge box costs time
  // proportional to the part of it on the map, not to its size.
  C10_HOST_DEVICE void sample_range(int64_t* s0, int64_t* s1) const {
    *s0 = 0, *s1 = n;
    if (!(bin > T(0))) return;  // all samples at one point (or a reversed box): few enough
    const double sv = static_cast<double>(start), bv = static_cast<double>(bin);
    if (!(sv - sv == 0.0 && bv - bv == 0.0)) {  // a box whose size overflowed T: every sample at +-inf or NaN
      *s1 = 0;
      return;
    }
    const double lo = mode == Mode::kAlign ? -1.0 : -0.5;
    const double hi = mode == Mode::kAlign ? static_cast<double>(extent) : static_cast<double>(extent) - 0.5;
    const double st = static_cast<double>(start), b = static_cast<double>(bin), nn = static_cast<double>(n);
    const double eps = sizeof(T) >= 8 ? 2.3e-16 : 1.2e-7;  // T's epsilon (float or double)
    const double margin = 8.0 * eps * (::fabs(st) + b) * nn / b + 2.0;
    const double first = (lo - st) * nn / b - 0.5 - margin;
    const double last = (hi - st) * nn / b - 0.5 + margin;
    if (first > 0.0) *s0 = first >= nn ? n : static_cast<int64_t>(first);
    if (last < nn - 1.0) *s1 = last < 0.0 ? 0 : static_cast<int64_t>(last) + 1;
  }

  // Calls f(index, weight, d weight / d shift) for every tap along the axis.
  // Samples that do not count (off the map) emit nothing; nor does any
  // sample on a map of zero height or width.
  template <typename F>
  C10_HOST_DEVICE void for_each_tap(F&& f) const {
    if (extent <= 0) return;
    if (mode == Mode::kPool) {
      const int64_t first = static_cast<int64_t>(start);
      for (int64_t i = 0; i < n; ++i) f(first + i, T(1), T(0));
      return;
    }
    int64_t s0, s1;
    sample_range(&s0, &s1);
    for (int64_t s = s0; s < s1; ++s) {
      T y = sample(s);
      if (!valid(y)) continue;
      bool clamped = false;
      if (y <= T(0)) y = T(0), clamped = true;
      int64_t low = static_cast<int64_t>(y);
      int64_t hi = low + 1;
      if (low >= extent - 1) {
        low = hi = extent - 1;
        y = static_cast<T>(low);
        clamped = true;
      }
      const T l = y - static_cast<T>(low);
      f(low, T(1) - l, clamped ? T(0) : T(-1));
      f(hi, l, clamped ? T(0) : T(1));
    }
  }
};

template <typename T>
struct Bin {
  Axis<T> y, x;
  T count;             // divisor of the sum (0: the bin is empty, its value is 0; NaN: NaN offset)
  int64_t channel;     // input channel offset of group (gh, gw) within output channel 0
  int64_t part;        // deform: offset cell of the bin, part_row * part_w + part_col
  T shift_scale_y, shift_scale_x;  // deform: d bin shift / d offset
};

// C++ rounding (half away from zero), as torchvision's ps_roi_pool.
// Pixel coordinates are clamped far outside any map before integer casts.
template <typename T>
C10_HOST_DEVICE inline int64_t round_half_away(T v) {
  v = v < T(-1e12) ? T(-1e12) : (v > T(1e12) ? T(1e12) : v);
  return static_cast<int64_t>(v < T(0) ? -::floor(-v + T(0.5)) : ::floor(v + T(0.5)));
}

C10_HOST_DEVICE inline int64_t clamp_i(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// The largest sampling_ratio (ps_roi_align) and sample_per_part
// (deform_ps_roi_pool): samples per bin side, so up to 2^20 per bin. Work is
// linear in it (the samples of a bin on the map are all visited), and more
// samples than that only slow a call down: 2^31 took about ten minutes.
// scalekit/ops/_ps_roi.py checks the same bound.
constexpr int64_t kMaxSamplesPerSide = 1024;

// The largest adaptive sample count per bin side: ny * nx stays within int64.
constexpr int64_t kMaxAdaptiveSamples = int64_t(1) << 31;

// roi_align's adaptive grid, ceil(bin size) samples per bin side; zero-size
// (or reversed) bins sample nothing and pool to 0 (roi_align's guard). The
// count is capped at kMaxAdaptiveSamples (bins over 2^31 pixels) instead of
// an undefined float-to-integer conversion.
template <typename T>
C10_HOST_DEVICE inline int64_t adaptive_samples(T bin) {
  const T c = ::ceil(bin);
  if (!(c > T(0))) return 0;
  return c < static_cast<T>(kMaxAdaptiveSamples) ? static_cast<int64_t>(c) : kMaxAdaptiveSamples;
}

// Per-RoI quantities, computed once per RoI.
template <typename T>
struct Frame {
  T sh, sw;      // start (pool: whole pixels)
  T bh, bw;      // bin size
  T rh, rw;      // RoI size (deform offsets scale with it)
  int64_t ny, nx;  // align: samples per bin side
};

// The frame of the RoI (x1, y1, x2, y2) = roi[0..3].
template <typename T>
C10_HOST_DEVICE inline Frame<T> make_frame(const Params<T>& p, const T* roi) {
  Frame<T> f;
  if (p.mode == Mode::kPool) {
    // torchvision's rounding of the RoI to whole pixels.
    const int64_t sw = round_half_away(roi[0] * p.spatial_scale);
    const int64_t sh = round_half_away(roi[1] * p.spatial_scale);
    const int64_t ew = round_half_away(roi[2] * p.spatial_scale);
    const int64_t eh = round_half_away(roi[3] * p.spatial_scale);
    const int64_t rw = ew - sw > 1 ? ew - sw : 1;
    const int64_t rh = eh - sh > 1 ? eh - sh : 1;
    f.sw = static_cast<T>(sw), f.sh = static_cast<T>(sh);
    f.rw = static_cast<T>(rw), f.rh = static_cast<T>(rh);
    f.bh = f.rh / static_cast<T>(p.pooled_h), f.bw = f.rw / static_cast<T>(p.pooled_w);
    f.ny = f.nx = 0;
    return f;
  }
  const T half = (p.mode == Mode::kDeform || p.aligned) ? T(0.5) : T(0);
  f.sw = roi[0] * p.spatial_scale - half;
  f.sh = roi[1] * p.spatial_scale - half;
  f.rw = roi[2] * p.spatial_scale - half - f.sw;
  f.rh = roi[3] * p.spatial_scale - half - f.sh;
  if (p.mode == Mode::kAlign && !p.aligned) {  // roi_align(aligned=False): at least 1x1
    f.rw = f.rw > T(1) ? f.rw : T(1);
    f.rh = f.rh > T(1) ? f.rh : T(1);
  }
  if (p.mode == Mode::kDeform) {  // the original's minimum RoI size
    f.rw = f.rw > T(0.1) ? f.rw : T(0.1);
    f.rh = f.rh > T(0.1) ? f.rh : T(0.1);
  }
  f.bh = f.rh / static_cast<T>(p.pooled_h), f.bw = f.rw / static_cast<T>(p.pooled_w);
  if (p.mode == Mode::kDeform) {
    f.ny = f.nx = p.sample_per_part;
  } else {
    f.ny = p.sampling_ratio > 0 ? p.sampling_ratio : adaptive_samples(f.bh);
    f.nx = p.sampling_ratio > 0 ? p.sampling_ratio : adaptive_samples(f.bw);
  }
  return f;
}

// Channel group of bin (ph, pw): its input channel within output channel 0.
template <typename T>
C10_HOST_DEVICE inline int64_t bin_channel(const Params<T>& p, int64_t ph, int64_t pw) {
  const int64_t gh = clamp_i(ph * p.group_h / p.pooled_h, 0, p.group_h - 1);
  const int64_t gw = clamp_i(pw * p.group_w / p.pooled_w, 0, p.group_w - 1);
  return gh * p.group_w + gw;
}

// Deformable offset cell of bin (ph, pw).
template <typename T>
C10_HOST_DEVICE inline int64_t bin_part(const Params<T>& p, int64_t ph, int64_t pw) {
  const int64_t r = clamp_i(ph * p.part_h / p.pooled_h, 0, p.part_h - 1);
  const int64_t c = clamp_i(pw * p.part_w / p.pooled_w, 0, p.part_w - 1);
  return r * p.part_w + c;
}

// Bin (ph, pw) of a RoI with frame f. `offset` points at this RoI's
// [2, part_h, part_w] normalised offsets, or is null; channel and part are
// bin_channel() and bin_part() of the bin.
template <typename T>
C10_HOST_DEVICE inline Bin<T> make_bin(const Params<T>& p, const Frame<T>& f, const T* offset,
                                       int64_t ph, int64_t pw, int64_t channel, int64_t part) {
  Bin<T> b;
  b.channel = channel;
  b.part = part;
  b.shift_scale_y = b.shift_scale_x = T(0);
  b.y.mode = b.x.mode = p.mode;
  b.y.extent = p.height;
  b.x.extent = p.width;
  b.y.bin = f.bh, b.x.bin = f.bw;
  if (p.mode == Mode::kPool) {
    // torchvision's bins, but clipped to [0, H] (its forward clips to H - 1).
    const int64_t sh = static_cast<int64_t>(f.sh), sw = static_cast<int64_t>(f.sw);
    const int64_t hs = clamp_i(round_half_away(::floor(static_cast<T>(ph) * f.bh)) + sh, 0, p.height);
    const int64_t he = clamp_i(round_half_away(::ceil(static_cast<T>(ph + 1) * f.bh)) + sh, 0, p.height);
    const int64_t ws = clamp_i(round_half_away(::floor(static_cast<T>(pw) * f.bw)) + sw, 0, p.width);
    const int64_t we = clamp_i(round_half_away(::ceil(static_cast<T>(pw + 1) * f.bw)) + sw, 0, p.width);
    b.y.start = static_cast<T>(hs), b.y.n = he > hs ? he - hs : 0;
    b.x.start = static_cast<T>(ws), b.x.n = we > ws ? we - ws : 0;
    b.count = static_cast<T>(b.y.n * b.x.n);
    return b;
  }
  b.y.start = static_cast<T>(ph) * f.bh + f.sh;
  b.x.start = static_cast<T>(pw) * f.bw + f.sw;
  b.y.n = f.ny, b.x.n = f.nx;
  if (p.mode == Mode::kAlign) {
    b.count = static_cast<T>(f.ny * f.nx);
    return b;
  }
  // Deformable: the bin shifted by offset * trans_std * RoI size.
  b.shift_scale_y = p.trans_std * f.rh;
  b.shift_scale_x = p.trans_std * f.rw;
  // A shift scale of 0 (trans_std = 0) ignores the offset, even an infinite one.
  T ox = T(0), oy = T(0);
  if (offset != nullptr) {
    ox = offset[part], oy = offset[p.part_h * p.part_w + part];
    if (b.shift_scale_x != T(0)) b.x.start = b.x.start + ox * b.shift_scale_x;
    if (b.shift_scale_y != T(0)) b.y.start = b.y.start + oy * b.shift_scale_y;
  }
  b.count = static_cast<T>(b.y.count() * b.x.count());
  // A NaN offset puts every sample at NaN, where nothing is read: the bin is
  // NaN (as a NaN input would make it), not an empty 0. An infinite offset
  // moves the bin off the map: it samples nothing and is 0, like any bin off
  // the map (so is a bin of a box whose size overflows T).
  if (!(ox == ox) || !(oy == oy)) b.count = std::numeric_limits<T>::quiet_NaN();
  return b;
}

// The value of a bin from the sum of its weighted samples: 0 for a bin that
// samples nothing (count 0), NaN for a NaN bin (count NaN).
template <typename T>
C10_HOST_DEVICE inline T bin_average(T sum, T count) {
  return count == T(0) ? T(0) : sum / count;
}

}  // namespace ps_roi
}  // namespace scalekit
