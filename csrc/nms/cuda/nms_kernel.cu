// Greedy NMS on CUDA.
//
// Boxes sorted by decreasing score; a first kernel writes, for every box i and
// every word of 64 later boxes, the bits of the boxes i suppresses. The greedy
// pass over that mask then runs on the GPU too (one block: a serial scan of 64
// boxes at a time on shared memory, then all threads OR the rows of the kept
// boxes into the removal words), so no N x N/64 mask crosses to the host.
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

constexpr int kWord = 64;           // boxes per mask word
constexpr int kReduceThreads = 256;

// mask[i * words + w]: bit k set when box i suppresses box w * 64 + k (> i).
template <typename acc_t>
__global__ void nms_mask_kernel(
    int64_t n, int64_t words, const acc_t* __restrict__ boxes,
    const int64_t* __restrict__ cats, acc_t threshold, acc_t off,
    uint64_t* __restrict__ mask) {
  const int64_t row_word = blockIdx.y, col_word = blockIdx.x;
  if (col_word < row_word) return;
  const int rows = static_cast<int>(min(n - row_word * kWord, int64_t(kWord)));
  const int cols = static_cast<int>(min(n - col_word * kWord, int64_t(kWord)));
  __shared__ acc_t col_box[kWord][5];
  __shared__ int64_t col_cat[kWord];
  const int t = threadIdx.x;
  if (t < cols) {
    const int64_t j = col_word * kWord + t;
    const acc_t* b = boxes + 4 * j;
    col_box[t][0] = b[0], col_box[t][1] = b[1], col_box[t][2] = b[2], col_box[t][3] = b[3];
    col_box[t][4] = box_area(b[0], b[1], b[2], b[3], off);
    col_cat[t] = cats != nullptr ? cats[j] : 0;
  }
  __syncthreads();
  if (t >= rows) return;
  const int64_t i = row_word * kWord + t;
  const acc_t* b = boxes + 4 * i;
  const acc_t x1 = b[0], y1 = b[1], x2 = b[2], y2 = b[3];
  const acc_t area = box_area(x1, y1, x2, y2, off);
  const int64_t cat = cats != nullptr ? cats[i] : 0;
  uint64_t bits = 0;
  for (int k = (row_word == col_word) ? t + 1 : 0; k < cols; ++k) {
    if (col_cat[k] != cat) continue;
    const acc_t iou = box_iou(
        x1, y1, x2, y2, area, col_box[k][0], col_box[k][1], col_box[k][2],
        col_box[k][3], col_box[k][4], off);
    if (iou > threshold) bits |= uint64_t(1) << k;
  }
  mask[i * words + col_word] = bits;
}

// keep[i] = 1 for the boxes greedy NMS keeps. removed: [words], zeroed.
__global__ void nms_reduce_kernel(
    int64_t n, int64_t words, const uint64_t* __restrict__ mask,
    uint64_t* __restrict__ removed, bool* __restrict__ keep) {
  __shared__ uint64_t diag[kWord];
  __shared__ uint64_t kept_shared;
  const int t = threadIdx.x;
  for (int64_t w = 0; w < words; ++w) {
    const int64_t base = w * kWord;
    const int size = static_cast<int>(min(n - base, int64_t(kWord)));
    if (t < size) diag[t] = mask[(base + t) * words + w];
    __syncthreads();
    if (t == 0) {
      uint64_t gone = removed[w], kept = 0;
      for (int k = 0; k < size; ++k) {
        if (!((gone >> k) & 1)) {
          kept |= uint64_t(1) << k;
          gone |= diag[k];
        }
      }
      kept_shared = kept;
    }
    __syncthreads();
    const uint64_t kept = kept_shared;
    if (t < size) keep[base + t] = (kept >> t) & 1;
    for (int64_t v = w + 1 + t; v < words; v += blockDim.x) {
      uint64_t gone = removed[v];
      for (uint64_t bits = kept; bits != 0; bits &= bits - 1) {
        const int k = __ffsll(static_cast<long long>(bits)) - 1;
        gone |= mask[(base + k) * words + v];
      }
      removed[v] = gone;
    }
    __syncthreads();
  }
}

at::Tensor nms_cuda(
    const at::Tensor& boxes, const at::Tensor& scores,
    const std::optional<at::Tensor>& idxs, double iou_threshold,
    double pixel_offset) {
  check_nms_args(boxes, scores, idxs, iou_threshold, pixel_offset);
  TORCH_CHECK_VALUE(boxes.is_cuda(), "boxes must be a CUDA tensor");
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const c10::cuda::CUDAGuard guard(boxes.device());
  check_finite(boxes, scores);
  const int64_t words = (n + kWord - 1) / kWord;
  TORCH_CHECK_VALUE(words <= 65535, "nms on CUDA takes at most ", 65535 * kWord, " boxes, got ", n);

  // Decreasing score, ties by increasing index.
  const at::Tensor order =
      std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  at::Tensor cats;
  if (idxs.has_value()) cats = idxs->index_select(0, order).contiguous();
  at::Tensor mask = at::empty({n, words}, boxes.options().dtype(at::kLong));
  at::Tensor removed = at::zeros({words}, boxes.options().dtype(at::kLong));
  at::Tensor keep = at::empty({n}, boxes.options().dtype(at::kBool));
  const auto stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, boxes.scalar_type(), "scalekit_nms_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const at::Tensor sorted =
            boxes.index_select(0, order).to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
        const dim3 grid(static_cast<unsigned>(words), static_cast<unsigned>(words));
        nms_mask_kernel<acc_t><<<grid, kWord, 0, stream>>>(
            n, words, sorted.data_ptr<acc_t>(),
            cats.defined() ? cats.data_ptr<int64_t>() : nullptr,
            threshold_as<acc_t>(iou_threshold), static_cast<acc_t>(pixel_offset),
            reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  nms_reduce_kernel<<<1, kReduceThreads, 0, stream>>>(
      n, words, reinterpret_cast<const uint64_t*>(mask.data_ptr<int64_t>()),
      reinterpret_cast<uint64_t*>(removed.data_ptr<int64_t>()), keep.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return order.masked_select(keep);
}

}  // namespace

TORCH_LIBRARY_IMPL(scalekit, CUDA, m) {
  m.impl("nms", TORCH_FN(nms_cuda));
}

}  // namespace scalekit
