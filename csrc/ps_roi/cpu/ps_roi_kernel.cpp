// ps_roi_pool, ps_roi_align and deform_ps_roi_pool on the CPU: one engine over
// the separable bins of ps_roi/geometry.h.
//
// forward:          parallel over (RoI, bin); taps computed once per bin and
//                   reused for every output channel.
// backward (input): parallel over (channel group, block of output channels):
//                   every input channel has exactly one writer, so there are
//                   no atomics and the result is deterministic.
// backward (offset): parallel over RoIs, deterministic too.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <memory>
#include <type_traits>
#include <vector>

#include "common/stable.h"
#include "ps_roi/entry.h"

namespace scalekit {
namespace ps_roi {
namespace {

static_assert(std::is_trivially_default_constructible_v<Bin<float>> &&
              std::is_trivially_default_constructible_v<Axis<float>>);

// Out of line and cold, so that the check costs the tap loop one compare.
[[noreturn]] __attribute__((noinline, cold)) void too_many_taps() {
  throw std::logic_error("ps_roi: more taps than pixels (internal error)");
}

template <typename T>
struct Taps {
  std::vector<int64_t> ri, ci;  // row offsets (row * width) and columns
  std::vector<T> rw, cw, rdw, cdw;
  int64_t nr = 0, nc = 0;

  void fill(const Bin<T>& b, int64_t width, bool derivatives) {
    nr = collect(b.y, width, derivatives, ri, rw, rdw);
    nc = collect(b.x, 1, derivatives, ci, cw, cdw);
  }

  // Taps of one pixel are merged into one entry: indices come in
  // non-decreasing pairs (low, low + 1), so a repeated index is always one of
  // the last two entries. At most one entry per pixel of the axis, so memory
  // is bounded by the map, never by the box or its number of samples.
  static int64_t collect(const Axis<T>& axis, int64_t stride, bool derivatives, std::vector<int64_t>& idx,
                         std::vector<T>& w, std::vector<T>& dw) {
    const size_t cap = static_cast<size_t>(std::max<int64_t>(0, std::min(axis.size(), axis.extent)));
    if (idx.size() < cap) idx.resize(cap), w.resize(cap), dw.resize(cap);
    int64_t n = 0;
    int64_t* pi = idx.data();
    T* pw = w.data();
    T* pd = dw.data();
    axis.for_each_tap([&](int64_t i, T wi, T dwi) {
      if (!(wi != T(0) || (derivatives && dwi != T(0)))) return;
      const int64_t at = i * stride;
      if (n > 0 && pi[n - 1] == at) {
        pw[n - 1] += wi, pd[n - 1] += dwi;
      } else if (n > 1 && pi[n - 2] == at) {
        pw[n - 2] += wi, pd[n - 2] += dwi;
      } else {
        if (C10_UNLIKELY(static_cast<size_t>(n) >= cap)) too_many_taps();
        pi[n] = at, pw[n] = wi, pd[n] = dwi, ++n;
      }
    });
    return n;
  }

  // sum_i ry_i sum_j cx_j plane[i, j]
  template <typename scalar_t>
  T dot(const scalar_t* plane, const std::vector<T>& ry, const std::vector<T>& cx) const {
    T acc = T(0);
    for (int64_t i = 0; i < nr; ++i) {
      const scalar_t* row = plane + ri[i];
      T r = T(0);
      for (int64_t j = 0; j < nc; ++j) r += cx[j] * static_cast<T>(row[ci[j]]);
      acc += ry[i] * r;
    }
    return acc;
  }
};

// ps_roi_pool's bins are whole-pixel rectangles with unit weights: sum them
// directly instead of through taps.
template <typename T, typename scalar_t>
T rect_sum(const scalar_t* plane, const Bin<T>& b, int64_t width) {
  const scalar_t* row = plane + static_cast<int64_t>(b.y.start) * width + static_cast<int64_t>(b.x.start);
  T acc = T(0);
  for (int64_t i = 0; i < b.y.n; ++i, row += width) {
    for (int64_t j = 0; j < b.x.n; ++j) acc += static_cast<T>(row[j]);
  }
  return acc;
}

// Params plus per-bin tables (computed once per call) and per-RoI frames.
template <typename T>
struct Geometry {
  Params<T> p;
  const T* rois;    // [K, 5], acc type
  const T* offset;  // [K, 2, part_h, part_w] or null
  std::vector<int64_t> channel, part;  // per bin

  Geometry(const Params<T>& params, const T* r, const T* o) : p(params), rois(r), offset(o) {
    for (int64_t ph = 0; ph < p.pooled_h; ++ph) {
      for (int64_t pw = 0; pw < p.pooled_w; ++pw) {
        channel.push_back(bin_channel(p, ph, pw));
        part.push_back(bin_part(p, ph, pw));
      }
    }
  }
  int64_t bins() const { return p.pooled_h * p.pooled_w; }
  Frame<T> frame(int64_t k) const { return make_frame(p, rois + 5 * k + 1); }
  Bin<T> bin(const Frame<T>& f, int64_t k, int64_t b) const {
    const T* o = offset != nullptr ? offset + k * 2 * p.part_h * p.part_w : nullptr;
    return make_bin(p, f, o, b / p.pooled_w, b % p.pooled_w, channel[b], part[b]);
  }
  int64_t batch(int64_t k) const { return static_cast<int64_t>(rois[5 * k]); }

  bool separable() const { return p.mode != Mode::kDeform; }

  // Without offsets a bin's y-axis depends on its row only and its x-axis on
  // its column only: the axes of RoI k, once per row and once per column.
  void roi_axes(int64_t k, Axis<T>* ys, Axis<T>* xs) const {
    const Frame<T> f = frame(k);
    const T* none = nullptr;
    for (int64_t ph = 0; ph < p.pooled_h; ++ph) ys[ph] = make_bin(p, f, none, ph, 0, 0, 0).y;
    for (int64_t pw = 0; pw < p.pooled_w; ++pw) xs[pw] = make_bin(p, f, none, 0, pw, 0, 0).x;
  }

  Bin<T> assemble(const Axis<T>& y, const Axis<T>& x, int64_t b) const {
    Bin<T> o;
    o.y = y, o.x = x;
    o.count = static_cast<T>(y.count() * x.count());
    o.channel = channel[b], o.part = 0;
    o.shift_scale_y = o.shift_scale_x = T(0);
    return o;
  }

  // All bins of RoI k into out[0, bins); ys and xs are scratch of pooled_h
  // and pooled_w axes (unused, may be null, for deformable bins).
  void roi_bins(int64_t k, Bin<T>* out, Axis<T>* ys, Axis<T>* xs) const {
    if (!separable()) {
      const Frame<T> f = frame(k);
      for (int64_t b = 0; b < bins(); ++b) out[b] = bin(f, k, b);
      return;
    }
    roi_axes(k, ys, xs);
    for (int64_t b = 0; b < bins(); ++b) out[b] = assemble(ys[b / p.pooled_w], xs[b % p.pooled_w], b);
  }
};

template <typename scalar_t, typename T>
void forward_impl(const Geometry<T>& g, const scalar_t* input, int64_t channels, int64_t k_count,
                  int64_t c_out, scalar_t* out) {
  const int64_t bins = g.bins(), groups = g.p.group_h * g.p.group_w;
  const int64_t plane = g.p.height * g.p.width;
  torch::stable::parallel_for(0, k_count, 1, [&](int64_t lo, int64_t hi) {
    Taps<T> taps;
    std::vector<Bin<T>> roi_bins(bins);
    std::vector<Axis<T>> ys(g.p.pooled_h), xs(g.p.pooled_w);
    for (int64_t k = lo; k < hi; ++k) {
      g.roi_bins(k, roi_bins.data(), ys.data(), xs.data());
      const scalar_t* image = input + g.batch(k) * channels * plane;
      for (int64_t b = 0; b < bins; ++b) {
        const Bin<T>& bin = roi_bins[b];
        const bool rect = g.p.mode == Mode::kPool;
        if (!rect) taps.fill(bin, g.p.width, false);
        const scalar_t* base = image + bin.channel * plane;
        scalar_t* dst = out + k * c_out * bins + b;
        for (int64_t c = 0; c < c_out; ++c) {
          const scalar_t* src = base + c * groups * plane;
          const T sum = rect ? rect_sum(src, bin, g.p.width) : taps.dot(src, taps.rw, taps.cw);
          dst[c * bins] = static_cast<scalar_t>(bin_average(sum, bin.count));
        }
      }
    }
  });
}

// grad_input (acc type, zeroed) += d out / d input * grad. grad_t is the
// output gradient bin-major, [bins, K, C], so that a task reads it in order.
template <typename scalar_t, typename T>
void backward_input_impl(const Geometry<T>& g, const scalar_t* grad_t, int64_t k_count,
                         int64_t c_out, int64_t channels, int64_t batch, T* grad_input) {
  const int64_t bins = g.bins(), groups = g.p.group_h * g.p.group_w;
  const int64_t plane = g.p.height * g.p.width;
  std::vector<std::vector<int64_t>> group_bins(groups);
  for (int64_t b = 0; b < bins; ++b) group_bins[g.channel[b]].push_back(b);
  // Every task visits every RoI, so the geometry is computed once, up front:
  // per-row and per-column axes when bins are separable, else whole bins
  // (bin-major, so that a task streams through the bins it owns). Arrays of
  // trivially default-constructible structs, not value-initialised first.
  const bool sep = g.separable();
  const int64_t ph = g.p.pooled_h, pw = g.p.pooled_w;
  std::unique_ptr<Axis<T>[]> ys(new Axis<T>[sep ? k_count * ph : 0]);
  std::unique_ptr<Axis<T>[]> xs(new Axis<T>[sep ? k_count * pw : 0]);
  std::unique_ptr<Bin<T>[]> all_bins(new Bin<T>[sep ? 0 : k_count * bins]);
  torch::stable::parallel_for(0, k_count, 64, [&](int64_t lo, int64_t hi) {
    std::vector<Bin<T>> roi(bins);
    for (int64_t k = lo; k < hi; ++k) {
      if (sep) {
        g.roi_axes(k, ys.get() + k * ph, xs.get() + k * pw);
        continue;
      }
      g.roi_bins(k, roi.data(), nullptr, nullptr);
      for (int64_t b = 0; b < bins; ++b) all_bins[b * k_count + k] = roi[b];
    }
  });
  auto bin_at = [&](int64_t k, int64_t b) {
    return sep ? g.assemble(ys[k * ph + b / pw], xs[k * pw + b % pw], b) : all_bins[b * k_count + k];
  };
  // Split output channels into blocks only when the groups alone leave threads idle.
  const int64_t want = 4 * static_cast<int64_t>(torch::stable::get_num_threads());
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(c_out, (want + groups - 1) / groups));
  const int64_t per_block = (c_out + blocks - 1) / blocks;
  torch::stable::parallel_for(0, groups * blocks, 1, [&](int64_t lo, int64_t hi) {
    Taps<T> taps;
    const int64_t dh = g.p.height + 1, dw = g.p.width + 1;
    std::vector<T> diff;
    std::vector<uint8_t> touched;
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t grp = task / blocks, c0 = (task % blocks) * per_block;
      const int64_t c1 = std::min(c_out, c0 + per_block);
      if (g.p.mode == Mode::kPool) {
        // A pool bin adds a constant over a rectangle: 4 adds into a 2-D
        // difference array per RoI, then one prefix sum per touched plane.
        diff.assign(batch * dh * dw, T(0));
        touched.assign(batch, 0);
        for (int64_t c = c0; c < c1; ++c) {
          for (int64_t k = 0; k < k_count; ++k) {
            const int64_t n = g.batch(k);
            T* d = diff.data() + n * dh * dw;
            for (const int64_t b : group_bins[grp]) {
              const Bin<T> bin = bin_at(k, b);
              if (!(bin.count > T(0))) continue;
              const T go = static_cast<T>(grad_t[(b * k_count + k) * c_out + c]) / bin.count;
              const int64_t hs = static_cast<int64_t>(bin.y.start), he = hs + bin.y.n;
              const int64_t ws = static_cast<int64_t>(bin.x.start), we = ws + bin.x.n;
              d[hs * dw + ws] += go, d[hs * dw + we] -= go, d[he * dw + ws] -= go, d[he * dw + we] += go;
              touched[n] = 1;
            }
          }
          for (int64_t n = 0; n < batch; ++n) {
            if (!touched[n]) continue;
            T* d = diff.data() + n * dh * dw;
            T* dst = grad_input + ((n * channels + grp) + c * groups) * plane;
            for (int64_t y = 0; y < g.p.height; ++y) {
              T row = T(0);
              for (int64_t x = 0; x < g.p.width; ++x) {
                row += d[y * dw + x];
                d[y * dw + x] = row + (y > 0 ? d[(y - 1) * dw + x] : T(0));  // 2-D prefix sum in place
                dst[y * g.p.width + x] += d[y * dw + x];
              }
            }
            std::fill(d, d + dh * dw, T(0));
            touched[n] = 0;
          }
        }
        continue;
      }
      for (int64_t k = 0; k < k_count; ++k) {
        for (const int64_t b : group_bins[grp]) {
          const Bin<T> bin = bin_at(k, b);
          if (!(bin.count > T(0))) continue;
          taps.fill(bin, g.p.width, false);
          T* base = grad_input + (g.batch(k) * channels + grp) * plane;
          for (int64_t c = c0; c < c1; ++c) {
            const T go = static_cast<T>(grad_t[(b * k_count + k) * c_out + c]) / bin.count;
            T* dst = base + c * groups * plane;
            for (int64_t i = 0; i < taps.nr; ++i) {
              const T gi = go * taps.rw[i];
              T* row = dst + taps.ri[i];
              for (int64_t j = 0; j < taps.nc; ++j) row[taps.ci[j]] += gi * taps.cw[j];
            }
          }
        }
      }
    }
  });
}

// grad_offset [K, 2, part_h, part_w] (acc type, zeroed)
template <typename scalar_t, typename T>
void backward_offset_impl(const Geometry<T>& g, const scalar_t* grad, const scalar_t* input,
                          int64_t k_count, int64_t c_out, int64_t channels, T* grad_offset) {
  const int64_t bins = g.bins(), groups = g.p.group_h * g.p.group_w;
  const int64_t plane = g.p.height * g.p.width, parts = g.p.part_h * g.p.part_w;
  torch::stable::parallel_for(0, k_count, 1, [&](int64_t lo, int64_t hi) {
    Taps<T> taps;
    std::vector<Bin<T>> roi_bins(bins);
    for (int64_t k = lo; k < hi; ++k) {
      g.roi_bins(k, roi_bins.data(), nullptr, nullptr);  // deformable: not separable
      for (int64_t b = 0; b < bins; ++b) {
        const Bin<T>& bin = roi_bins[b];
        if (bin.count != bin.count) {  // a NaN offset: its gradient is NaN too
          grad_offset[k * 2 * parts + bin.part] = bin.count;
          grad_offset[(k * 2 + 1) * parts + bin.part] = bin.count;
          continue;
        }
        if (!(bin.count > T(0))) continue;
        taps.fill(bin, g.p.width, true);
        const scalar_t* base = input + (g.batch(k) * channels + bin.channel) * plane;
        T dx = T(0), dy = T(0);
        for (int64_t c = 0; c < c_out; ++c) {
          const T go = static_cast<T>(grad[(k * c_out + c) * bins + b]) / bin.count;
          const scalar_t* src = base + c * groups * plane;
          dx += go * taps.dot(src, taps.rw, taps.cdw);
          dy += go * taps.dot(src, taps.rdw, taps.cw);
        }
        grad_offset[k * 2 * parts + bin.part] += dx * bin.shift_scale_x;
        grad_offset[(k * 2 + 1) * parts + bin.part] += dy * bin.shift_scale_y;
      }
    }
  });
}

template <typename T>
Geometry<T> geometry(const OpArgs& a, const Tensor& rois_acc, const std::optional<Tensor>& offset_acc,
                     int64_t height, int64_t width) {
  return Geometry<T>(a.params<T>(height, width), rois_acc.const_data_ptr<T>(),
                     offset_acc.has_value() ? offset_acc->const_data_ptr<T>() : nullptr);
}

Tensor acc_contiguous(const Tensor& t, ScalarType acc) { return as_contiguous(to_dtype(t, acc)); }

std::optional<Tensor> acc_contiguous(const std::optional<Tensor>& t, ScalarType acc) {
  return t.has_value() ? std::optional(acc_contiguous(*t, acc)) : std::nullopt;
}

// Finite coordinates and integral batch indices in [0, batch) (checks.h).
void check_roi_values(const Tensor& rois, int64_t batch) {
  if (rois.size(0) == 0) return;
  const Tensor r = acc_contiguous(rois, ScalarType::Double);
  const double* v = r.const_data_ptr<double>();
  for (int64_t k = 0; k < rois.size(0); ++k) {
    const double* row = v + 5 * k;
    const bool finite = std::isfinite(row[0]) && std::isfinite(row[1]) && std::isfinite(row[2]) &&
        std::isfinite(row[3]) && std::isfinite(row[4]);
    if (!finite || row[0] < 0 || row[0] >= batch || row[0] != std::trunc(row[0])) bad_roi(k, row, batch);
  }
}

struct CpuImpl {
  using Tensor = scalekit::Tensor;

  static Tensor forward(const Tensor& input, const Tensor& rois, const std::optional<Tensor>& offset,
                        const OpArgs& a) {
    const int64_t c_out = check_forward(input, rois, offset, a);
    check_roi_values(rois, input.size(0));
    Tensor out = new_zeros({rois.size(0), c_out, a.pooled_h, a.pooled_w}, input.scalar_type());
    // A map of zero height or width has nothing to sample: every bin is 0.
    if (out.numel() == 0 || input.size(2) == 0 || input.size(3) == 0) return out;
    const Tensor x = as_contiguous(input);
    dispatch_floating(x.scalar_type(), "input", [&](auto tag) {
      using scalar_t = typename decltype(tag)::type;
      using T = acc_type<scalar_t>;
      constexpr ScalarType acc = scalar_type_of<T>();
      const Tensor r = acc_contiguous(rois, acc);
      const std::optional<Tensor> o = acc_contiguous(offset, acc);
      forward_impl<scalar_t, T>(geometry<T>(a, r, o, x.size(2), x.size(3)), x.const_data_ptr<scalar_t>(),
                                x.size(1), rois.size(0), c_out, out.mutable_data_ptr<scalar_t>());
    });
    return out;
  }

  static std::tuple<Tensor, Tensor> backward(
      const Tensor& grad, const std::optional<Tensor>& input, const Tensor& rois,
      const std::optional<Tensor>& offset, const OpArgs& a, int64_t batch, int64_t channels,
      int64_t height, int64_t width, bool offset_grad) {
    check_backward(grad, input, rois, offset, a, batch, channels, height, width);
    check_roi_values(rois, batch);
    const int64_t c_out = grad.size(1);
    const ScalarType dtype = grad.scalar_type();
    Tensor grad_input, grad_offset;
    const Tensor gr = as_contiguous(grad);
    dispatch_floating(dtype, "grad", [&](auto tag) {
      using scalar_t = typename decltype(tag)::type;
      using T = acc_type<scalar_t>;
      constexpr ScalarType acc = scalar_type_of<T>();
      const Tensor r = acc_contiguous(rois, acc);
      const std::optional<Tensor> o = acc_contiguous(offset, acc);
      const auto g = geometry<T>(a, r, o, height, width);
      Tensor gi = new_zeros({batch, channels, height, width}, acc);
      if (gr.numel() > 0 && gi.numel() > 0) {
        const Tensor gt = as_contiguous(permuted(torch::stable::flatten(gr, 2), {2, 0, 1}));
        backward_input_impl<scalar_t, T>(g, gt.const_data_ptr<scalar_t>(), rois.size(0), c_out, channels, batch,
                                         gi.mutable_data_ptr<T>());
      }
      grad_input = to_dtype(gi, dtype);
      if (offset_grad) {
        Tensor go = new_zeros({rois.size(0), 2, a.part_h, a.part_w}, acc);
        if (o.has_value() && gr.numel() > 0 && height > 0 && width > 0) {
          const Tensor x = as_contiguous(*input);
          backward_offset_impl<scalar_t, T>(g, gr.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                            rois.size(0), c_out, channels, go.mutable_data_ptr<T>());
        }
        grad_offset = to_dtype(go, dtype);
      }
    });
    return {grad_input, grad_offset};
  }
};

using CpuEntry = Entry<CpuImpl>;

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(scalekit, CPU, m) {
  m.impl("ps_roi_pool", TORCH_BOX(&CpuEntry::ps_roi_pool));
  m.impl("_ps_roi_pool_backward", TORCH_BOX(&CpuEntry::ps_roi_pool_backward));
  m.impl("ps_roi_align", TORCH_BOX(&CpuEntry::ps_roi_align));
  m.impl("_ps_roi_align_backward", TORCH_BOX(&CpuEntry::ps_roi_align_backward));
  m.impl("deform_ps_roi_pool", TORCH_BOX(&CpuEntry::deform_ps_roi_pool));
  m.impl("_deform_ps_roi_pool_backward", TORCH_BOX(&CpuEntry::deform_ps_roi_pool_backward));
}

}  // namespace ps_roi
}  // namespace scalekit
