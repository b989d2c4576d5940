// Deformable convolution on the CPU.
//
// A sample's four corners and weights depend on (offset group, tap, pixel)
// only, so they are computed once per image into a small plan and reused by
// every channel of the group (torchvision recomputes them per channel).
// im2col and col2im are parallel over channels: in col2im every channel's
// gradient plane has one writer, so backward needs no atomics and is
// deterministic; the offset and mask gradients are parallel over (offset
// group, tap, pixel block), with channels in the inner loop.
#include <optional>
#include <tuple>
#include <vector>

#include "common/stable.h"
#include "deform_conv/checks.h"

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
  torch::stable::parallel_for(0, rows * pixels, 2048, [&](int64_t lo, int64_t hi) {
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
  static void im2col(const Geometry& g, const Tensor& input, const Tensor& offset, const std::optional<Tensor>& mask,
                     const Tensor& cols) {
    dispatch_float_double(input.scalar_type(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      const auto plan = make_plan<T>(g, offset.const_data_ptr<T>(), mask ? mask->const_data_ptr<T>() : nullptr);
      const T* in = input.const_data_ptr<T>();
      T* out = cols.mutable_data_ptr<T>();
      const int64_t per_group = g.channels / g.offset_groups, plane = g.height * g.width, pixels = g.pixels();
      torch::stable::parallel_for(0, g.channels, 1, [&](int64_t c0, int64_t c1) {
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

  static void col2im(const Geometry& g, const Tensor& grad_cols, const Tensor& offset,
                     const std::optional<Tensor>& mask, const Tensor& grad_input) {
    dispatch_float_double(grad_cols.scalar_type(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      const auto plan = make_plan<T>(g, offset.const_data_ptr<T>(), mask ? mask->const_data_ptr<T>() : nullptr);
      const T* gc = grad_cols.const_data_ptr<T>();
      T* gin = grad_input.mutable_data_ptr<T>();
      const int64_t per_group = g.channels / g.offset_groups, plane = g.height * g.width, pixels = g.pixels();
      torch::stable::parallel_for(0, g.channels, 1, [&](int64_t c0, int64_t c1) {
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

  static void coord_grad(const Geometry& g, const Tensor& grad_cols, const Tensor& input,
                         const Tensor& offset, const std::optional<Tensor>& mask, const Tensor& grad_offset,
                         const std::optional<Tensor>& grad_mask) {
    dispatch_float_double(grad_cols.scalar_type(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* gc = grad_cols.const_data_ptr<T>();
      const T* in = input.const_data_ptr<T>();
      const T* off = offset.const_data_ptr<T>();
      const T* msk = mask ? mask->const_data_ptr<T>() : nullptr;
      T* goff = grad_offset.mutable_data_ptr<T>();
      T* gmask = grad_mask ? grad_mask->mutable_data_ptr<T>() : nullptr;
      const int64_t per_group = g.channels / g.offset_groups, plane = g.height * g.width, pixels = g.pixels();
      constexpr int64_t kBlock = 256;
      const int64_t blocks = (pixels + kBlock - 1) / kBlock;
      torch::stable::parallel_for(0, g.offset_groups * g.taps() * blocks, 1, [&](int64_t lo, int64_t hi) {
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

// The host side: the loop over images and the GEMMs (bmm through the
// dispatcher, one per image and group). deform_conv/driver.h has the same loop
// on the classic ABI for the CUDA kernels.
using torch::stable::select;
using torch::stable::transpose;
using torch::stable::view;

std::optional<Tensor> select_image(const std::optional<Tensor>& t, int64_t n) {
  return t ? std::optional(select(*t, 0, n)) : std::nullopt;
}

// out = a @ b, batched, into out's memory.
void bmm_out(const Tensor& out, const Tensor& a, const Tensor& b) { call_op("aten::bmm", "out", a, b, out); }

// dst += src (both contiguous, same shape and floating dtype).
void add_into(const Tensor& dst, const Tensor& src) {
  dispatch_float_double(dst.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* d = dst.mutable_data_ptr<T>();
    const T* s = src.const_data_ptr<T>();
    for (int64_t i = 0; i < dst.numel(); ++i) d[i] += s[i];
  });
}

Tensor forward_impl(const Tensor& input_, const Tensor& weight, const Tensor& offset_,
                    const std::optional<Tensor>& mask_, const std::optional<Tensor>& bias, const Geometry& g) {
  const Tensor input = as_contiguous(input_), offset = as_contiguous(offset_);
  const std::optional<Tensor> mask = mask_ ? std::optional(as_contiguous(*mask_)) : std::nullopt;
  const int64_t n_img = input.size(0), c_out = weight.size(0), rows = g.channels * g.taps(), groups = g.groups;
  const ScalarType dtype = input.scalar_type();
  Tensor out = new_empty({n_img, c_out, g.out_h, g.out_w}, dtype);
  if (out.numel() == 0) return out;
  const Tensor cols = new_empty({rows, g.pixels()}, dtype);
  const Tensor w = view(as_contiguous(weight), {groups, c_out / groups, rows / groups});
  for (int64_t n = 0; n < n_img; ++n) {
    CpuKernels::im2col(g, select(input, 0, n), select(offset, 0, n), select_image(mask, n), cols);
    bmm_out(view(select(out, 0, n), {groups, c_out / groups, g.pixels()}), w,
            view(cols, {groups, rows / groups, g.pixels()}));
  }
  if (bias) {
    const Tensor b = as_contiguous(to_dtype(*bias, dtype));
    dispatch_float_double(dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* o = out.mutable_data_ptr<T>();
      const T* bv = b.const_data_ptr<T>();
      const int64_t plane = g.out_h * g.out_w;
      for (int64_t i = 0; i < n_img * c_out; ++i)
        for (int64_t p = 0; p < plane; ++p) o[i * plane + p] += bv[i % c_out];
    });
  }
  return out;
}

// Returns grad_input, grad_weight, grad_offset, grad_mask, grad_bias.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> backward_impl(
    const Tensor& grad_, const Tensor& input_, const Tensor& weight, const Tensor& offset_,
    const std::optional<Tensor>& mask_, const std::optional<Tensor>& bias, const Geometry& g) {
  const Tensor input = as_contiguous(input_), offset = as_contiguous(offset_), grad = as_contiguous(grad_);
  const std::optional<Tensor> mask = mask_ ? std::optional(as_contiguous(*mask_)) : std::nullopt;
  const int64_t n_img = input.size(0), c_out = weight.size(0), rows = g.channels * g.taps(), groups = g.groups;
  SK_CHECK(has_shape(grad, {n_img, c_out, g.out_h, g.out_w}), "grad must have the output's shape, got ",
           shape(grad));
  const ScalarType dtype = input.scalar_type();
  const Tensor grad_input = zeros_as(input), grad_offset = zeros_as(offset);
  const std::optional<Tensor> grad_mask = mask ? std::optional(zeros_as(*mask)) : std::nullopt;
  const Tensor w = view(as_contiguous(weight), {groups, c_out / groups, rows / groups});
  const Tensor grad_w = new_zeros({groups, c_out / groups, rows / groups}, dtype);
  const Tensor grad_w_n = new_empty({groups, c_out / groups, rows / groups}, dtype);
  const Tensor cols = new_empty({rows, g.pixels()}, dtype);
  const Tensor grad_cols = new_empty({groups, rows / groups, g.pixels()}, dtype);
  for (int64_t n = 0; n < n_img && grad.numel() > 0; ++n) {
    const Tensor go = view(select(grad, 0, n), {groups, c_out / groups, g.pixels()});
    const std::optional<Tensor> mask_n = select_image(mask, n);
    bmm_out(grad_cols, transpose(w, 1, 2), go);
    const Tensor gc = view(grad_cols, {rows, g.pixels()});
    CpuKernels::col2im(g, gc, select(offset, 0, n), mask_n, select(grad_input, 0, n));
    CpuKernels::coord_grad(g, gc, select(input, 0, n), select(offset, 0, n), mask_n, select(grad_offset, 0, n),
                           select_image(grad_mask, n));
    CpuKernels::im2col(g, select(input, 0, n), select(offset, 0, n), mask_n, cols);
    bmm_out(grad_w_n, go, transpose(view(cols, {groups, rows / groups, g.pixels()}), 1, 2));
    add_into(grad_w, grad_w_n);
  }
  const Tensor grad_bias =
      bias ? torch::stable::sum(grad, std::vector<int64_t>{0, 2, 3}) : Tensor();
  std::vector<int64_t> weight_shape(weight.sizes().begin(), weight.sizes().end());
  return {grad_input, view(grad_w, weight_shape), grad_offset, grad_mask ? *grad_mask : Tensor(), grad_bias};
}

// float16 and bfloat16 run in float32 on the CPU (no native half arithmetic
// worth having there): arguments are checked in their own dtype, upcast,
// and the results rounded back to each argument's dtype.
std::optional<Tensor> to_float(const std::optional<Tensor>& t) {
  return t ? std::optional(to_dtype(*t, ScalarType::Float)) : std::nullopt;
}

Tensor to_dtype_if(const Tensor& t, ScalarType dtype) { return t.defined() ? to_dtype(t, dtype) : t; }

Tensor forward_cpu(const Tensor& input, const Tensor& weight, const Tensor& offset,
                   const std::optional<Tensor>& mask, const std::optional<Tensor>& bias,
                   int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                   int64_t dil_w, int64_t groups, int64_t offset_groups) {
  const Geometry g = check_args(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                                groups, offset_groups);
  const ScalarType dtype = input.scalar_type();
  if (dtype == ScalarType::Float || dtype == ScalarType::Double) {
    return forward_impl(input, weight, offset, mask, bias, g);
  }
  const ScalarType f = ScalarType::Float;
  return to_dtype(forward_impl(to_dtype(input, f), to_dtype(weight, f), to_dtype(offset, f), to_float(mask),
                               to_float(bias), g),
                  dtype);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> backward_cpu(
    const Tensor& grad, const Tensor& input, const Tensor& weight, const Tensor& offset,
    const std::optional<Tensor>& mask, const std::optional<Tensor>& bias, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
    int64_t offset_groups) {
  const Geometry g = check_args(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                                groups, offset_groups);
  const ScalarType dtype = input.scalar_type();
  if (dtype == ScalarType::Float || dtype == ScalarType::Double) {
    return backward_impl(grad, input, weight, offset, mask, bias, g);
  }
  const ScalarType f = ScalarType::Float;
  auto [gi, gw, go, gm, gb] = backward_impl(to_dtype(grad, f), to_dtype(input, f), to_dtype(weight, f),
                                            to_dtype(offset, f), to_float(mask), to_float(bias), g);
  return {to_dtype(gi, dtype), to_dtype(gw, dtype), to_dtype(go, dtype), to_dtype_if(gm, dtype),
          to_dtype_if(gb, dtype)};
}

STABLE_TORCH_LIBRARY_IMPL(scalekit, CPU, m) {
  m.impl("deform_conv2d", TORCH_BOX(&forward_cpu));
  m.impl("_deform_conv2d_backward", TORCH_BOX(&backward_cpu));
}

}  // namespace

}  // namespace deform_conv
}  // namespace scalekit
