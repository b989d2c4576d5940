// Soft-NMS on CUDA: the first public GPU Soft-NMS we know of.
//
// One persistent block runs the paper's loop: a block-wide argmax of the
// current scores (ties to the lower index, as on the CPU), then every thread
// decays its share of the remaining boxes. Exact, deterministic, and the same
// arithmetic as the CPU kernel (shared iou.h); O(N) work per selected box.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "nms/iou.h"
#include "nms/cuda/finite.h"
#include "nms/nms_checks.h"

namespace scalekit {
namespace {

using namespace nms_detail;

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

// Whether candidate a (score sa, index ia) beats b; an index < 0 is "none".
template <typename T>
__device__ inline bool beats(T sa, int64_t ia, T sb, int64_t ib) {
  if (ia < 0) return false;
  if (ib < 0) return true;
  return sa > sb || (sa == sb && ia < ib);
}

template <typename T>
__device__ inline void warp_argmax(T& s, int64_t& i) {
  for (int delta = 16; delta > 0; delta /= 2) {
    const T so = __shfl_down_sync(0xffffffffu, s, delta);
    const int64_t io = __shfl_down_sync(0xffffffffu, i, delta);
    if (beats(so, io, s, i)) s = so, i = io;
  }
}

template <typename acc_t>
__global__ void __launch_bounds__(kThreads) soft_nms_kernel(
    int64_t n, const acc_t* __restrict__ boxes, const int64_t* __restrict__ cats,
    acc_t* __restrict__ score, uint8_t* __restrict__ alive, acc_t threshold,
    acc_t sigma, double score_threshold, SoftNMSMethod method, acc_t off,
    int64_t* __restrict__ keep, acc_t* __restrict__ kept_scores,
    int64_t* __restrict__ num_kept) {
  __shared__ acc_t warp_score[kWarps];
  __shared__ int64_t warp_index[kWarps];
  __shared__ int64_t selected;
  const int t = threadIdx.x, lane = t % 32, warp = t / 32;
  for (int64_t j = t; j < n; j += kThreads) {
    alive[j] = !(static_cast<double>(score[j]) < score_threshold);
  }
  __syncthreads();
  int64_t count = 0;
  while (true) {
    // 1. argmax of the alive scores.
    acc_t best_score = acc_t(0);
    int64_t best = -1;
    for (int64_t j = t; j < n; j += kThreads) {
      if (alive[j] && beats(score[j], j, best_score, best)) best_score = score[j], best = j;
    }
    warp_argmax(best_score, best);
    if (lane == 0) warp_score[warp] = best_score, warp_index[warp] = best;
    __syncthreads();
    if (warp == 0) {
      best_score = warp_score[lane];
      best = warp_index[lane];
      warp_argmax(best_score, best);
      if (lane == 0) {
        selected = best;
        if (best >= 0) {
          keep[count] = best;
          kept_scores[count] = best_score;
          alive[best] = 0;
        }
      }
    }
    __syncthreads();
    const int64_t s = selected;
    if (s < 0) break;
    ++count;
    // 2. decay the boxes of the selected box's category.
    const acc_t sx1 = boxes[4 * s], sy1 = boxes[4 * s + 1];
    const acc_t sx2 = boxes[4 * s + 2], sy2 = boxes[4 * s + 3];
    const acc_t sarea = box_area(sx1, sy1, sx2, sy2, off);
    const int64_t scat = cats != nullptr ? cats[s] : 0;
    for (int64_t j = t; j < n; j += kThreads) {
      if (!alive[j] || (cats != nullptr && cats[j] != scat)) continue;
      const acc_t* b = boxes + 4 * j;
      const acc_t iou = box_iou(
          sx1, sy1, sx2, sy2, sarea, b[0], b[1], b[2], b[3],
          box_area(b[0], b[1], b[2], b[3], off), off);
      const acc_t weight = soft_nms_weight(method, iou, threshold, sigma);
      if (weight == acc_t(1)) continue;
      if (method == SoftNMSMethod::kHard) {
        alive[j] = 0;
        continue;
      }
      score[j] = soft_nms_decay(score[j], weight);
      if (static_cast<double>(score[j]) < score_threshold) alive[j] = 0;
    }
    __syncthreads();
  }
  if (t == 0) *num_kept = count;
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cuda(
    const at::Tensor& boxes, const at::Tensor& scores,
    const std::optional<at::Tensor>& idxs, double iou_threshold, double sigma,
    double score_threshold, c10::string_view method, double pixel_offset) {
  const SoftNMSMethod m = check_soft_nms_args(
      boxes, scores, idxs, iou_threshold, sigma, score_threshold, method, pixel_offset);
  TORCH_CHECK_VALUE(boxes.is_cuda(), "boxes must be a CUDA tensor");
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return {at::empty({0}, boxes.options().dtype(at::kLong)), at::empty({0}, scores.options())};
  }
  const c10::cuda::CUDAGuard guard(boxes.device());
  check_finite(boxes, scores);
  const at::Tensor cats = idxs.has_value() ? idxs->contiguous() : at::Tensor();
  at::Tensor keep = at::empty({n}, boxes.options().dtype(at::kLong));
  at::Tensor num_kept = at::empty({1}, boxes.options().dtype(at::kLong));
  at::Tensor alive = at::empty({n}, boxes.options().dtype(at::kByte));
  at::Tensor kept_scores;
  const auto stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, boxes.scalar_type(), "scalekit_soft_nms_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        constexpr auto acc = c10::CppTypeToScalarType<acc_t>::value;
        const at::Tensor b = boxes.to(acc).contiguous();
        at::Tensor work = scores.to(acc).contiguous().clone();
        kept_scores = at::empty({n}, work.options());
        soft_nms_kernel<acc_t><<<1, kThreads, 0, stream>>>(
            n, b.data_ptr<acc_t>(), cats.defined() ? cats.data_ptr<int64_t>() : nullptr,
            work.data_ptr<acc_t>(), alive.data_ptr<uint8_t>(),
            threshold_as<acc_t>(iou_threshold), static_cast<acc_t>(sigma),
            score_threshold, m, static_cast<acc_t>(pixel_offset),
            keep.data_ptr<int64_t>(), kept_scores.data_ptr<acc_t>(),
            num_kept.data_ptr<int64_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  const int64_t k = num_kept.item<int64_t>();
  return {keep.narrow(0, 0, k), kept_scores.narrow(0, 0, k).to(scores.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(scalekit, CUDA, m) {
  m.impl("soft_nms", TORCH_FN(soft_nms_cuda));
}

}  // namespace scalekit
