// Deformable convolution on the CPU.
//
// A sample's four corners and weights depend on (offset group, tap, pixel)
// only, so they are computed once per image into a small plan and reused by
// every channel of the group (torchvision recomputes them per channel).
// im2col and col2im are parallel over channels: in col2im every channel's
// gradient plane has one writer, so backward needs no atomics and is
// deterministic; the offset and mask gradients are parallel over (offset
// group, tap, pixel block), with channels in the inner loop.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "deform_conv/driver.h"

namespace scalekit {
namespace deform_conv {
namespace {

template <typename T>
struct Tap {
  int64_t idx[4];
  T w[4];  // bilinear weight x mask
  T poison;  // NaN for a NaN position or a non-finite mask, else 0 (sample.h)
};

template <typename T>
std::vector<Tap<T>> make_plan(const Geometry& g, const T* offset, const T* mask) {
  const int64_t rows = g.offset_groups * g.taps(), pixels = g.pixels();
  std::vector<Tap<T>> plan(rows * pixels);
  at::parallel_for(0, rows * pixels, 2048, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t og = r / pixels / g.taps(), k = (r / pixels) % g.taps(), p = r % pixels;
      T dy, dx, m;
      read_offset(g, offset, mask, og, k, p, dy, dx, m);
      const Sample<T> s = make_sample(g, k, p, dy, dx);
      plan[r].poison = poison(s, m);
      for (int j = 0; j < 4; ++j) {
        plan[r].idx[j] = s.inside ? s.idx[j] : -1;
        plan[r].w[j] = (s.inside && s.idx[j] >= 0) ? s.weight(j) * m : T(0);
      }
    }
  });
  return plan;
}

struct CpuKernels {
  static void im2col(const Geometry& g, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                     at::Tensor& cols) {
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "scalekit_deform_im2col", [&] {
      using T = scalar_t;
      const auto plan = make_plan<T>(g, offset.data_ptr<T>(), mask.defined() ? mask.data_ptr<T>() : nullptr);
      const T* in = input.data_ptr<T>();
      T* out = cols.data_ptr<T>();
      const int64_t per_group = g.channels / g.offset_groups, plane = g.height * g.width, pixels = g.pixels();
      at::parallel_for(0, g.channels, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          const T* src = in + c * plane;
          for (int64_t k = 0; k < g.taps(); ++k) {
            const Tap<T>* taps = plan.data() + ((c / per_group) * g.taps() + k) * pixels;
            T* row = out + (c * g.taps() + k) * pixels;
            for (int64_t p = 0; p < pixels; ++p) {
              const Tap<T>& t = taps[p];
              T v = T(0);
              for (int j = 0; j < 4; ++j) v += t.idx[j] >= 0 ? t.w[j] * src[t.idx[j]] : T(0);
              row[p] = v + t.poison;
            }
          }
        }
      });
    });
  }

  static void col2im(const Geometry& g, const at::Tensor& grad_cols, const at::Tensor& offset,
                     const at::Tensor& mask, at::Tensor grad_input) {
    AT_DISPATCH_FLOATING_TYPES(grad_cols.scalar_type(), "scalekit_deform_col2im", [&] {
      using T = scalar_t;
      const auto plan = make_plan<T>(g, offset.data_ptr<T>(), mask.defined() ? mask.data_ptr<T>() : nullptr);
      const T* gc = grad_cols.data_ptr<T>();
      T* gin = grad_input.data_ptr<T>();
      const int64_t per_group = g.channels / g.offset_groups, plane = g.height * g.width, pixels = g.pixels();
      at::parallel_for(0, g.channels, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          T* dst = gin + c * plane;
          for (int64_t k = 0; k < g.taps(); ++k) {
            const Tap<T>* taps = plan.data() + ((c / per_group) * g.taps() + k) * pixels;
            const T* row = gc + (c * g.taps() + k) * pixels;
            for (int64_t p = 0; p < pixels; ++p) {
              const Tap<T>& t = taps[p];
              for (int j = 0; j < 4; ++j) {
                if (t.idx[j] >= 0) dst[t.idx[j]] += t.w[j] * row[p];
              }
            }
          }
        }
      });
    });
  }

  static void coord_grad(const Geometry& g, const at::Tensor& grad_cols, const at::Tensor& input,
                         const at::Tensor& offset, const at::Tensor& mask, at::Tensor grad_offset,
                         at::Tensor grad_mask) {
    AT_DISPATCH_FLOATING_TYPES(grad_cols.scalar_type(), "scalekit_deform_coord_grad", [&] {
      using T = scalar_t;
      const T* gc = grad_cols.data_ptr<T>();
      const T* in = input.data_ptr<T>();
      const T* off = offset.data_ptr<T>();
      const T* msk = mask.defined() ? mask.data_ptr<T>() : nullptr;
      T* goff = grad_offset.data_ptr<T>();
      T* gmask = grad_mask.defined() ? grad_mask.data_ptr<T>() : nullptr;
      const int64_t per_group = g.channels / g.offset_groups, plane = g.height * g.width, pixels = g.pixels();
      constexpr int64_t kBlock = 256;
      const int64_t blocks = (pixels + kBlock - 1) / kBlock;
      at::parallel_for(0, g.offset_groups * g.taps() * blocks, 1, [&](int64_t lo, int64_t hi) {
        std::vector<Sample<T>> samples(kBlock);
        std::vector<T> m(kBlock), ay(kBlock), ax(kBlock), am(kBlock);
        for (int64_t task = lo; task < hi; ++task) {
          const int64_t row = task / blocks, og = row / g.taps(), k = row % g.taps();
          const int64_t p0 = (task % blocks) * kBlock, np = std::min(kBlock, pixels - p0);
          for (int64_t q = 0; q < np; ++q) {
            T dy, dx;
            read_offset(g, off, msk, og, k, p0 + q, dy, dx, m[q]);
            samples[q] = make_sample(g, k, p0 + q, dy, dx);
            ay[q] = ax[q] = am[q] = T(0);
          }
          for (int64_t c = og * per_group; c < (og + 1) * per_group; ++c) {
            const T* src = in + c * plane;
            const T* grow = gc + (c * g.taps() + k) * pixels + p0;
            for (int64_t q = 0; q < np; ++q) {
              T v, dvdy, dvdx;
              sample_value(samples[q], src, v, dvdy, dvdx);
              if (samples[q].inside) am[q] += grow[q] * v;
              ay[q] += grow[q] * dvdy;
              ax[q] += grow[q] * dvdx;
            }
          }
          for (int64_t q = 0; q < np; ++q) {
            const T nan = samples[q].nan ? poison(samples[q], m[q]) : T(0);
            goff[(2 * row) * pixels + p0 + q] = ay[q] * m[q] + nan;
            goff[(2 * row + 1) * pixels + p0 + q] = ax[q] * m[q] + nan;
            if (gmask != nullptr) gmask[row * pixels + p0 + q] = am[q] + nan;
          }
        }
      });
    });
  }
};

// float16 and bfloat16 run in float32 on the CPU (no native half arithmetic
// worth having there): arguments are checked in their own dtype, upcast,
// and the results rounded back to each argument's dtype.
bool is_reduced(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

std::optional<at::Tensor> to_float(const std::optional<at::Tensor>& t) {
  return t.has_value() ? std::optional<at::Tensor>(t->to(at::kFloat)) : std::nullopt;
}

at::Tensor forward_cpu(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                       const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias,
                       int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                       int64_t dil_w, int64_t groups, int64_t offset_groups) {
  if (!is_reduced(input)) {
    return Driver<CpuKernels>::forward(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h,
                                       dil_w, groups, offset_groups);
  }
  check_args(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
             offset_groups);
  return Driver<CpuKernels>::forward(input.to(at::kFloat), weight.to(at::kFloat), offset.to(at::kFloat),
                                     to_float(mask), to_float(bias), stride_h, stride_w, pad_h, pad_w, dil_h,
                                     dil_w, groups, offset_groups)
      .to(input.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
    int64_t offset_groups) {
  if (!is_reduced(input)) {
    return Driver<CpuKernels>::backward(grad, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                                        dil_h, dil_w, groups, offset_groups);
  }
  check_args(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups,
             offset_groups);
  auto [gi, gw, go, gm, gb] = Driver<CpuKernels>::backward(
      grad.to(at::kFloat), input.to(at::kFloat), weight.to(at::kFloat), offset.to(at::kFloat), to_float(mask),
      to_float(bias), stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups);
  const auto dtype = input.scalar_type();
  return {gi.to(dtype), gw.to(dtype), go.to(dtype), gm.defined() ? gm.to(dtype) : gm,
          gb.defined() ? gb.to(dtype) : gb};
}

TORCH_LIBRARY_IMPL(scalekit, CPU, m) {
  m.impl("deform_conv2d", TORCH_FN(forward_cpu));
  m.impl("_deform_conv2d_backward", TORCH_FN(backward_cpu));
}

}  // namespace

}  // namespace deform_conv
}  // namespace scalekit
