// Launch helpers shared by the CUDA kernels: a fixed block size and a
// grid-stride loop, so any element count fits a bounded grid.
#pragma once

#include <algorithm>
#include <cstdint>

namespace scalekit {

constexpr int kCudaThreads = 256;

inline int cuda_blocks_for(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kCudaThreads - 1) / kCudaThreads, 65535 * 16)));
}

#define SCALEKIT_GRID_STRIDE(i, n)                                                     \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

}  // namespace scalekit
