// ps_roi_pool, ps_roi_align and deform_ps_roi_pool on CUDA, over the same
// geometry as the CPU kernels (ps_roi/geometry.h): one thread per output
// element. Backward scatters with atomic adds, so it is not deterministic;
// PyTorch's non-determinism alert is raised.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/cuda_launch.h"
#include "ps_roi/entry.h"

namespace scalekit {
namespace ps_roi {
namespace {

// The bin of output element `index` = ((k * c_out + c) * bins + b), and where
// the input plane it reads starts.
template <typename T>
struct Site {
  int64_t k, c, b;
  Bin<T> bin;
  int64_t plane_offset;  // of input channel (c * groups + bin.channel) in the RoI's image
};

template <typename T>
__device__ inline Site<T> site(const Params<T>& p, const T* rois, const T* offset,
                               int64_t index, int64_t c_out, int64_t channels) {
  const int64_t bins = p.pooled_h * p.pooled_w;
  Site<T> s;
  s.b = index % bins;
  s.c = (index / bins) % c_out;
  s.k = index / bins / c_out;
  const int64_t ph = s.b / p.pooled_w, pw = s.b % p.pooled_w;
  const Frame<T> f = make_frame(p, rois + 5 * s.k + 1);
  const T* o = offset != nullptr ? offset + s.k * 2 * p.part_h * p.part_w : nullptr;
  s.bin = make_bin(p, f, o, ph, pw, bin_channel(p, ph, pw), bin_part(p, ph, pw));
  const int64_t n = static_cast<int64_t>(rois[5 * s.k]);
  s.plane_offset = (n * channels + s.c * p.group_h * p.group_w + s.bin.channel) * p.height * p.width;
  return s;
}

template <typename scalar_t, typename T>
__global__ void forward_kernel(Params<T> p, const scalar_t* __restrict__ input,
                               const T* __restrict__ rois, const T* __restrict__ offset,
                               int64_t channels, int64_t c_out, int64_t total,
                               scalar_t* __restrict__ out) {
  SCALEKIT_GRID_STRIDE(index, total) {
    const Site<T> s = site(p, rois, offset, index, c_out, channels);
    T acc = T(0);
    if (s.bin.count > T(0)) {
      const scalar_t* src = input + s.plane_offset;
      const int64_t width = p.width;
      s.bin.y.for_each_tap([&](int64_t y, T wy, T) {
        if (wy == T(0)) return;
        T row = T(0);
        s.bin.x.for_each_tap([&](int64_t x, T wx, T) {
          if (wx != T(0)) row += wx * static_cast<T>(src[y * width + x]);
        });
        acc += wy * row;
      });
    }
    out[index] = static_cast<scalar_t>(bin_average(acc, s.bin.count));
  }
}

template <typename scalar_t, typename T>
__global__ void backward_input_kernel(Params<T> p, const scalar_t* __restrict__ grad,
                                      const T* __restrict__ rois, const T* __restrict__ offset,
                                      int64_t channels, int64_t c_out, int64_t total,
                                      T* __restrict__ grad_input) {
  SCALEKIT_GRID_STRIDE(index, total) {
    const Site<T> s = site(p, rois, offset, index, c_out, channels);
    if (!(s.bin.count > T(0))) continue;
    const T g = static_cast<T>(grad[index]) / s.bin.count;
    if (g == T(0)) continue;
    T* dst = grad_input + s.plane_offset;
    const int64_t width = p.width;
    s.bin.y.for_each_tap([&](int64_t y, T wy, T) {
      if (wy == T(0)) return;
      s.bin.x.for_each_tap([&](int64_t x, T wx, T) {
        if (wx != T(0)) gpuAtomicAdd(dst + y * width + x, g * wy * wx);
      });
    });
  }
}

template <typename scalar_t, typename T>
__global__ void backward_offset_kernel(Params<T> p, const scalar_t* __restrict__ grad,
                                       const scalar_t* __restrict__ input,
                                       const T* __restrict__ rois, const T* __restrict__ offset,
                                       int64_t channels, int64_t c_out, int64_t total,
                                       T* __restrict__ grad_offset) {
  const int64_t parts = p.part_h * p.part_w;
  SCALEKIT_GRID_STRIDE(index, total) {
    const Site<T> s = site(p, rois, offset, index, c_out, channels);
    if (s.bin.count != s.bin.count) {  // a NaN offset: its gradient is NaN too
      grad_offset[s.k * 2 * parts + s.bin.part] = s.bin.count;
      grad_offset[(s.k * 2 + 1) * parts + s.bin.part] = s.bin.count;
      continue;
    }
    if (!(s.bin.count > T(0))) continue;
    const T g = static_cast<T>(grad[index]) / s.bin.count;
    if (g == T(0)) continue;
    const scalar_t* src = input + s.plane_offset;
    const int64_t width = p.width;
    T dx = T(0), dy = T(0);
    s.bin.y.for_each_tap([&](int64_t y, T wy, T dwy) {
      T row = T(0), drow = T(0);
      s.bin.x.for_each_tap([&](int64_t x, T wx, T dwx) {
        const T v = static_cast<T>(src[y * width + x]);
        row += wx * v;
        drow += dwx * v;
      });
      dx += wy * drow;
      dy += dwy * row;
    });
    gpuAtomicAdd(grad_offset + s.k * 2 * parts + s.bin.part, g * dx * s.bin.shift_scale_x);
    gpuAtomicAdd(grad_offset + (s.k * 2 + 1) * parts + s.bin.part, g * dy * s.bin.shift_scale_y);
  }
}

// The first RoI row (or k) whose coordinates are not all finite or whose batch
// index is not an integer in [0, batch) (checks.h). `rois` is [k, 5] and
// contiguous, in the kernels' working precision (exact for every input dtype).
template <typename T>
__global__ void first_bad_roi_kernel(const T* __restrict__ rois, int64_t k, double batch,
                                     unsigned long long* __restrict__ first) {
  SCALEKIT_GRID_STRIDE(i, k) {
    const T* r = rois + 5 * i;
    const double b = static_cast<double>(r[0]);
    bool bad = !(b >= 0.0 && b < batch && b == trunc(b));
    for (int j = 1; j < 5; ++j) bad = bad || !isfinite(static_cast<double>(r[j]));
    if (bad) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

// One fill, one kernel and one device sync (a `.item()`); the offending row is
// copied to the host only on error. (The first version took a dozen ATen
// reductions and element-wise kernels: the profile of the third GPU run
// counted 31 kernel launches for one ps_roi_align forward + backward.)
template <typename T>
void check_roi_values(const at::Tensor& rois, int64_t batch) {
  const int64_t k = rois.size(0);
  if (k == 0) return;
  at::Tensor first = at::full({1}, k, rois.options().dtype(at::kLong));
  first_bad_roi_kernel<T><<<cuda_blocks_for(k), kCudaThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      rois.data_ptr<T>(), k, static_cast<double>(batch),
      reinterpret_cast<unsigned long long*>(first.data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t bad = first.item<int64_t>();
  if (bad >= k) return;
  const at::Tensor row = rois[bad].to(at::kDouble).cpu().contiguous();
  bad_roi(bad, row.data_ptr<double>(), batch);
}

struct CudaImpl {
  using Tensor = at::Tensor;

  static at::Tensor forward(const at::Tensor& input, const at::Tensor& rois,
                            const std::optional<at::Tensor>& offset, const OpArgs& a) {
    TORCH_CHECK_VALUE(input.is_cuda(), "input must be a CUDA tensor");
    const c10::cuda::CUDAGuard guard(input.device());
    const int64_t c_out = check_forward(input, rois, offset, a);
    const at::Tensor x = input.contiguous();
    const auto stream = c10::cuda::getCurrentCUDAStream();
    at::Tensor out;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "scalekit_ps_roi_forward_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      constexpr auto acc = c10::CppTypeToScalarType<T>::value;
      const at::Tensor r = rois.to(acc).contiguous();
      check_roi_values<T>(r, input.size(0));
      // A map of zero height or width has nothing to sample: every bin is 0, as on the CPU
      // (also with a NaN offset; the first GPU run found NaN here).
      if (input.size(2) == 0 || input.size(3) == 0) {
        out = at::zeros({rois.size(0), c_out, a.pooled_h, a.pooled_w}, input.options());
        return;
      }
      out = at::empty({rois.size(0), c_out, a.pooled_h, a.pooled_w}, input.options());
      if (out.numel() == 0) return;
      const at::Tensor o = offset.has_value() ? offset->to(acc).contiguous() : at::Tensor();
      forward_kernel<scalar_t, T><<<cuda_blocks_for(out.numel()), kCudaThreads, 0, stream>>>(
          a.params<T>(x.size(2), x.size(3)), x.data_ptr<scalar_t>(), r.data_ptr<T>(),
          o.defined() ? o.data_ptr<T>() : nullptr, x.size(1), c_out, out.numel(),
          out.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return out;
  }

  static std::tuple<at::Tensor, at::Tensor> backward(
      const at::Tensor& grad, const std::optional<at::Tensor>& input, const at::Tensor& rois,
      const std::optional<at::Tensor>& offset, const OpArgs& a, int64_t batch, int64_t channels,
      int64_t height, int64_t width, bool offset_grad) {
    TORCH_CHECK_VALUE(grad.is_cuda(), "grad must be a CUDA tensor");
    const c10::cuda::CUDAGuard guard(grad.device());
    check_backward(grad, input, rois, offset, a, batch, channels, height, width);
    const int64_t c_out = grad.size(1);
    const at::ScalarType dtype = grad.scalar_type();
    const at::Tensor gr = grad.contiguous();
    const auto stream = c10::cuda::getCurrentCUDAStream();
    at::Tensor grad_input, grad_offset;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "scalekit_ps_roi_backward_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      constexpr auto acc = c10::CppTypeToScalarType<T>::value;
      const at::Tensor r = rois.to(acc).contiguous();
      check_roi_values<T>(r, batch);
      at::globalContext().alertNotDeterministic("scalekit position-sensitive RoI pooling backward (CUDA)");
      const at::Tensor o = offset.has_value() ? offset->to(acc).contiguous() : at::Tensor();
      const auto p = a.params<T>(height, width);
      at::Tensor gi = at::zeros({batch, channels, height, width}, grad.options().dtype(acc));
      // Nothing was sampled from an empty map: zero gradients, as on the CPU.
      const bool sampled = gr.numel() > 0 && gi.numel() > 0;
      if (sampled) {
        backward_input_kernel<scalar_t, T><<<cuda_blocks_for(gr.numel()), kCudaThreads, 0, stream>>>(
            p, gr.data_ptr<scalar_t>(), r.data_ptr<T>(), o.defined() ? o.data_ptr<T>() : nullptr,
            channels, c_out, gr.numel(), gi.data_ptr<T>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      grad_input = gi.to(dtype);
      if (offset_grad) {
        at::Tensor go = at::zeros({rois.size(0), 2, a.part_h, a.part_w}, grad.options().dtype(acc));
        if (o.defined() && sampled) {
          const at::Tensor x = input->contiguous();
          backward_offset_kernel<scalar_t, T><<<cuda_blocks_for(gr.numel()), kCudaThreads, 0, stream>>>(
              p, gr.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), r.data_ptr<T>(), o.data_ptr<T>(),
              channels, c_out, gr.numel(), go.data_ptr<T>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        grad_offset = go.to(dtype);
      }
    });
    return {grad_input, grad_offset};
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(scalekit, CUDA, m) {
  using E = Entry<CudaImpl>;
  m.impl("ps_roi_pool", TORCH_FN(E::ps_roi_pool));
  m.impl("_ps_roi_pool_backward", TORCH_FN(E::ps_roi_pool_backward));
  m.impl("ps_roi_align", TORCH_FN(E::ps_roi_align));
  m.impl("_ps_roi_align_backward", TORCH_FN(E::ps_roi_align_backward));
  m.impl("deform_ps_roi_pool", TORCH_FN(E::deform_ps_roi_pool));
  m.impl("_deform_ps_roi_pool_backward", TORCH_FN(E::deform_ps_roi_pool_backward));
}

}  // namespace ps_roi
}  // namespace scalekit
