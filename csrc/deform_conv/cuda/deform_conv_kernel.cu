// Deformable convolution on CUDA: the host side (checks, per-image GEMMs) is
// deform_conv/driver.h; these are its three kernels, over the same sampling
// code as the CPU (deform_conv/sample.h). col2im scatters with atomic adds
// (PyTorch's non-determinism alert is raised); the offset and mask gradients
// have one thread per (offset group, tap, pixel) and no atomics.
#include <type_traits>

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "common/cuda_launch.h"
#include "deform_conv/driver.h"

namespace scalekit {
namespace deform_conv {
namespace {

// Column element i = (c * taps + k) * pixels + p: its channel and its sample.
template <typename scalar_t, typename T>
__device__ inline Sample<T> column_sample(const Geometry& g, int64_t i, const scalar_t* offset,
                                          const scalar_t* mask, int64_t& c, T& m) {
  const int64_t pixels = g.pixels(), taps = g.taps();
  const int64_t p = i % pixels, k = (i / pixels) % taps;
  c = i / pixels / taps;
  T dy, dx;
  read_offset<T>(g, offset, mask, c / (g.channels / g.offset_groups), k, p, dy, dx, m);
  return make_sample<T>(g, k, p, dy, dx);
}

template <typename scalar_t, typename T>
__global__ void im2col_kernel(Geometry g, const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
                              const scalar_t* __restrict__ mask, scalar_t* __restrict__ cols) {
  const int64_t plane = g.height * g.width;
  SCALEKIT_GRID_STRIDE(i, g.channels * g.taps() * g.pixels()) {
    int64_t c;
    T m;
    const Sample<T> s = column_sample<scalar_t, T>(g, i, offset, mask, c, m);
    T v = T(0);
    for (int j = 0; j < 4 && s.inside; ++j) {
      if (s.idx[j] >= 0) v += s.weight(j) * static_cast<T>(input[c * plane + s.idx[j]]);
    }
    cols[i] = static_cast<scalar_t>(v * m + poison(s, m));
  }
}

template <typename scalar_t, typename T>
__global__ void col2im_kernel(Geometry g, const scalar_t* __restrict__ grad_cols, const scalar_t* __restrict__ offset,
                              const scalar_t* __restrict__ mask, T* __restrict__ grad_input) {
  const int64_t plane = g.height * g.width;
  SCALEKIT_GRID_STRIDE(i, g.channels * g.taps() * g.pixels()) {
    int64_t c;
    T m;
    const Sample<T> s = column_sample<scalar_t, T>(g, i, offset, mask, c, m);
    const T gm = static_cast<T>(grad_cols[i]) * m;
    for (int j = 0; j < 4 && s.inside; ++j) {
      if (s.idx[j] >= 0) gpuAtomicAdd(grad_input + c * plane + s.idx[j], gm * s.weight(j));
    }
  }
}

template <typename scalar_t, typename T>
__global__ void coord_grad_kernel(Geometry g, const scalar_t* __restrict__ grad_cols,
                                  const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
                                  const scalar_t* __restrict__ mask, scalar_t* __restrict__ grad_offset,
                                  scalar_t* __restrict__ grad_mask) {
  const int64_t pixels = g.pixels(), taps = g.taps(), plane = g.height * g.width;
  const int64_t per_group = g.channels / g.offset_groups;
  SCALEKIT_GRID_STRIDE(i, g.offset_groups * taps * pixels) {
    const int64_t p = i % pixels, row = i / pixels, og = row / taps, k = row % taps;
    T dy, dx, m;
    read_offset<T>(g, offset, mask, og, k, p, dy, dx, m);
    const Sample<T> s = make_sample<T>(g, k, p, dy, dx);
    T ay = T(0), ax = T(0), am = T(0);
    for (int64_t c = og * per_group; c < (og + 1) * per_group; ++c) {
      T v, dvdy, dvdx;
      sample_value<T>(s, input + c * plane, v, dvdy, dvdx);
      const T gc = static_cast<T>(grad_cols[(c * taps + k) * pixels + p]);
      if (s.inside) am += gc * v;
      ay += gc * dvdy;
      ax += gc * dvdx;
    }
    const T nan = s.nan ? poison(s, m) : T(0);
    grad_offset[(2 * row) * pixels + p] = static_cast<scalar_t>(ay * m + nan);
    grad_offset[(2 * row + 1) * pixels + p] = static_cast<scalar_t>(ax * m + nan);
    if (grad_mask != nullptr) grad_mask[row * pixels + p] = static_cast<scalar_t>(am + nan);
  }
}

template <typename scalar_t>
const scalar_t* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<scalar_t>() : nullptr;
}

struct CudaKernels {
  static void im2col(const Geometry& g, const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                     at::Tensor& cols) {
    const c10::cuda::CUDAGuard guard(input.device());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "scalekit_deform_im2col_cuda", [&] {
      im2col_kernel<scalar_t, at::opmath_type<scalar_t>>
          <<<cuda_blocks_for(cols.numel()), kCudaThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
              g, input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(mask),
              cols.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static void col2im(const Geometry& g, const at::Tensor& grad_cols, const at::Tensor& offset,
                     const at::Tensor& mask, at::Tensor grad_input) {
    const c10::cuda::CUDAGuard guard(grad_cols.device());
    at::globalContext().alertNotDeterministic("scalekit deform_conv2d backward (CUDA)");
    // float16 / bfloat16 gradients add up in float, then round once: atomic adds on
    // 16-bit values made the float16 backward 11 ms of col2im against 1.1 ms in float32
    // (res5, third GPU run), and rounded at every add.
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_cols.scalar_type(), "scalekit_deform_col2im_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      constexpr bool widened = !std::is_same_v<T, scalar_t>;
      at::Tensor sum = grad_input;
      if constexpr (widened) {
        sum = at::zeros(grad_input.sizes(), grad_input.options().dtype(c10::CppTypeToScalarType<T>::value));
      }
      col2im_kernel<scalar_t, T>
          <<<cuda_blocks_for(grad_cols.numel()), kCudaThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
              g, grad_cols.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(mask),
              sum.data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if constexpr (widened) grad_input.add_(sum);
    });
  }

  static void coord_grad(const Geometry& g, const at::Tensor& grad_cols, const at::Tensor& input,
                         const at::Tensor& offset, const at::Tensor& mask, at::Tensor grad_offset,
                         at::Tensor grad_mask) {
    const c10::cuda::CUDAGuard guard(grad_cols.device());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_cols.scalar_type(), "scalekit_deform_coord_cuda", [&] {
      coord_grad_kernel<scalar_t, at::opmath_type<scalar_t>>
          <<<cuda_blocks_for(g.offset_groups * g.taps() * g.pixels()), kCudaThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
              g, grad_cols.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), offset.data_ptr<scalar_t>(),
              ptr_or_null<scalar_t>(mask), grad_offset.data_ptr<scalar_t>(),
              grad_mask.defined() ? grad_mask.data_ptr<scalar_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(scalekit, CUDA, m) {
  m.impl("deform_conv2d", TORCH_FN(Driver<CudaKernels>::forward));
  m.impl("_deform_conv2d_backward", TORCH_FN(Driver<CudaKernels>::backward));
}

}  // namespace deform_conv
}  // namespace scalekit
