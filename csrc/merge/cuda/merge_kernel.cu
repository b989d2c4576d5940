// Non-maximum merging on CUDA: SAHI's greedy NMM and (transitive) NMM.
//
// Boxes are sorted into the visiting order (merge.h) with stable sorts, one
// key at a time. Then:
// * greedy NMM: a pair kernel writes, for every box i and every word of 64
//   later boxes, the bits of the boxes i matches (NMS's mask); one block scans
//   it as greedy NMS does, and records for each box taken the keeper that
//   took it (the first keeper, in order, whose row has it);
// * NMM: a box j is taken by the first box i before it (keeper or not) that
//   matches and dominates it, so the pair kernel only keeps, per box, the
//   smallest such i (atomicMin; no mask), and the group of a box is the root
//   of that forest, found by pointer jumping.
// The members of each group are then sorted into SAHI's order (greedy: the
// visiting order; NMM: by the box that took them, then by index) and one
// thread per keeper re-checks them against the merged box as it grows.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <climits>
#include <cmath>
#include <tuple>

#include "common/cuda_launch.h"
#include "merge/merge.h"
#include "nms/cuda/finite.h"

namespace scalekit {
namespace {

using namespace merge_detail;

constexpr int kWord = 64;  // boxes per mask word and per pair block
constexpr int kReduceThreads = 256;

// For the pairs (i, j > i) of row word blockIdx.y and column word blockIdx.x:
// greedy (claimer == nullptr): mask bit when they match; NMM: claimer[j] =
// min(claimer[j], i) when they match and i dominates j.
template <typename acc_t>
__global__ void merge_pairs_kernel(
    int64_t n, int64_t words, const acc_t* __restrict__ boxes,
    const acc_t* __restrict__ scores, const int64_t* __restrict__ cats,
    MatchMetric metric, acc_t threshold, uint64_t* __restrict__ mask,
    int* __restrict__ claimer) {
  const int64_t row_word = blockIdx.y, col_word = blockIdx.x;
  if (col_word < row_word) return;
  const int rows = static_cast<int>(min(n - row_word * kWord, int64_t(kWord)));
  const int cols = static_cast<int>(min(n - col_word * kWord, int64_t(kWord)));
  __shared__ acc_t col_box[kWord][6];
  __shared__ int64_t col_cat[kWord];
  const int t = threadIdx.x;
  if (t < cols) {
    const int64_t j = col_word * kWord + t;
    const acc_t* b = boxes + 4 * j;
    col_box[t][0] = b[0], col_box[t][1] = b[1], col_box[t][2] = b[2], col_box[t][3] = b[3];
    col_box[t][4] = merge_area(b[0], b[1], b[2], b[3]);
    col_box[t][5] = scores[j];
    col_cat[t] = cats != nullptr ? cats[j] : 0;
  }
  __syncthreads();
  if (t >= rows) return;
  const int64_t i = row_word * kWord + t;
  const acc_t* b = boxes + 4 * i;
  const acc_t x1 = b[0], y1 = b[1], x2 = b[2], y2 = b[3], s = scores[i];
  const acc_t area = merge_area(x1, y1, x2, y2);
  const int64_t cat = cats != nullptr ? cats[i] : 0;
  uint64_t bits = 0;
  for (int k = (row_word == col_word) ? t + 1 : 0; k < cols; ++k) {
    if (col_cat[k] != cat) continue;
    const acc_t v = match_value(
        metric, x1, y1, x2, y2, area, col_box[k][0], col_box[k][1], col_box[k][2],
        col_box[k][3], col_box[k][4]);
    if (!(v >= threshold)) continue;
    if (claimer == nullptr) {
      bits |= uint64_t(1) << k;
    } else if (dominates(s, x1, y1, x2, y2, col_box[k][5], col_box[k][0], col_box[k][1],
                         col_box[k][2], col_box[k][3])) {
      atomicMin(claimer + col_word * kWord + k, static_cast<int>(i));
    }
  }
  if (claimer == nullptr) mask[i * words + col_word] = bits;
}

// Greedy NMM's scan (NMS's, one block): owner[j] = the keeper that took box j,
// left at -1 for the keepers. removed: [words], zeroed.
__global__ void greedy_scan_kernel(
    int64_t n, int64_t words, const uint64_t* __restrict__ mask,
    uint64_t* __restrict__ removed, int64_t* __restrict__ owner) {
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
        if ((gone >> k) & 1) continue;
        kept |= uint64_t(1) << k;
        for (uint64_t fresh = diag[k] & ~gone; fresh != 0; fresh &= fresh - 1) {
          owner[base + __ffsll(static_cast<long long>(fresh)) - 1] = base + k;
        }
        gone |= diag[k];
      }
      kept_shared = kept;
    }
    __syncthreads();
    const uint64_t kept = kept_shared;
    for (int64_t v = w + 1 + t; v < words; v += blockDim.x) {
      uint64_t gone = removed[v];
      for (uint64_t bits = kept; bits != 0; bits &= bits - 1) {
        const int k = __ffsll(static_cast<long long>(bits)) - 1;
        const uint64_t row = mask[(base + k) * words + v];
        for (uint64_t fresh = row & ~gone; fresh != 0; fresh &= fresh - 1) {
          owner[v * kWord + __ffsll(static_cast<long long>(fresh)) - 1] = base + k;
        }
        gone |= row;
      }
      removed[v] = gone;
    }
    __syncthreads();
  }
}

// One pointer-jumping round: root[j] = root[root[j]]. A box's chain of
// claimers only leads to earlier boxes, so ceil(log2 n) + 1 rounds reach the
// keepers (in place: a value read early or late is an ancestor either way).
__global__ void jump_kernel(int64_t n, int64_t* __restrict__ root) {
  SCALEKIT_GRID_STRIDE(j, n) { root[j] = root[root[j]]; }
}

// One thread per keeper: its members, in order, merged into its box when they
// still match the box merged so far.
template <typename acc_t>
__global__ void merge_groups_kernel(
    int64_t groups, const acc_t* __restrict__ boxes, const int64_t* __restrict__ keepers,
    const int64_t* __restrict__ members, const int64_t* __restrict__ begin,
    const int64_t* __restrict__ end, MatchMetric metric, acc_t threshold,
    acc_t* __restrict__ out) {
  SCALEKIT_GRID_STRIDE(g, groups) {
    const acc_t* k = boxes + 4 * keepers[g];
    acc_t x1 = k[0], y1 = k[1], x2 = k[2], y2 = k[3];
    acc_t area = merge_area(x1, y1, x2, y2);
    for (int64_t m = begin[g]; m < end[g]; ++m) {
      const acc_t* b = boxes + 4 * members[m];
      const acc_t v = match_value(metric, x1, y1, x2, y2, area, b[0], b[1], b[2], b[3],
                                  merge_area(b[0], b[1], b[2], b[3]));
      if (!(v >= threshold)) continue;
      x1 = min_(x1, b[0]), y1 = min_(y1, b[1]), x2 = max_(x2, b[2]), y2 = max_(y2, b[3]);
      area = merge_area(x1, y1, x2, y2);
    }
    out[4 * g] = x1, out[4 * g + 1] = y1, out[4 * g + 2] = x2, out[4 * g + 3] = y2;
  }
}

// Permutation into the visiting order: stable sorts from the last key to the first.
at::Tensor visiting_order(const at::Tensor& boxes, const at::Tensor& scores) {
  at::Tensor perm = at::arange(boxes.size(0), boxes.options().dtype(at::kLong));
  for (const int64_t col : {3, 2, 1, 0}) {  // y2, then x2, y1, x1: x1 ends up the major key
    const at::Tensor key = boxes.select(1, col).index_select(0, perm);
    perm = perm.index_select(0, std::get<1>(key.sort(/*stable=*/true, 0, /*descending=*/false)));
  }
  const at::Tensor key = scores.index_select(0, perm);
  return perm.index_select(0, std::get<1>(key.sort(/*stable=*/true, 0, /*descending=*/true)));
}

at::Tensor stable_order_by(const at::Tensor& key) {
  return std::get<1>(key.sort(/*stable=*/true, 0, /*descending=*/false));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> merge_cuda(
    const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
    double match_threshold, c10::string_view metric_name, bool greedy) {
  const MatchMetric metric = check_merge_args(boxes, scores, idxs, match_threshold, metric_name);
  TORCH_CHECK_VALUE(boxes.is_cuda(), "boxes must be a CUDA tensor");
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return {at::empty({0}, boxes.options().dtype(at::kLong)), at::empty({0, 4}, boxes.options()),
            at::empty({0}, scores.options())};
  }
  const c10::cuda::CUDAGuard guard(boxes.device());
  nms_detail::check_finite(boxes, scores);
  const int64_t words = (n + kWord - 1) / kWord;
  TORCH_CHECK_VALUE(words <= 65535, "greedy_nmm / nmm on CUDA take at most ", 65535 * kWord,
                    " boxes, got ", n);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const auto long_opts = boxes.options().dtype(at::kLong);
  at::Tensor keep, merged;

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, boxes.scalar_type(), "scalekit_merge_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto acc = c10::CppTypeToScalarType<acc_t>::value;
        const at::Tensor b_acc = boxes.to(acc);
        const at::Tensor s_acc = scores.to(acc);
        const at::Tensor order = visiting_order(b_acc, s_acc);
        const at::Tensor sb = b_acc.index_select(0, order).contiguous();
        const at::Tensor ss = s_acc.index_select(0, order).contiguous();
        at::Tensor cats;
        if (idxs.has_value()) cats = idxs->index_select(0, order).contiguous();
        const acc_t threshold = merge_threshold<acc_t>(match_threshold);
        const dim3 grid(static_cast<unsigned>(words), static_cast<unsigned>(words));

        at::Tensor keepers, members, group_of_member;  // positions in the visiting order
        if (greedy) {
          at::Tensor mask = at::empty({n, words}, long_opts);
          merge_pairs_kernel<acc_t><<<grid, kWord, 0, stream>>>(
              n, words, sb.data_ptr<acc_t>(), ss.data_ptr<acc_t>(),
              cats.defined() ? cats.data_ptr<int64_t>() : nullptr, metric, threshold,
              reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()), nullptr);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          at::Tensor removed = at::zeros({words}, long_opts);
          at::Tensor owner = at::full({n}, -1, long_opts);
          greedy_scan_kernel<<<1, kReduceThreads, 0, stream>>>(
              n, words, reinterpret_cast<const uint64_t*>(mask.data_ptr<int64_t>()),
              reinterpret_cast<uint64_t*>(removed.data_ptr<int64_t>()), owner.data_ptr<int64_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          keepers = (owner < 0).nonzero().view(-1);
          members = (owner >= 0).nonzero().view(-1);  // ascending: the visiting order
          group_of_member = owner.index_select(0, members);
          const at::Tensor by_owner = stable_order_by(group_of_member);
          members = members.index_select(0, by_owner);
          group_of_member = group_of_member.index_select(0, by_owner);
        } else {
          at::Tensor claimer = at::full({n}, INT_MAX, long_opts.dtype(at::kInt));
          merge_pairs_kernel<acc_t><<<grid, kWord, 0, stream>>>(
              n, words, sb.data_ptr<acc_t>(), ss.data_ptr<acc_t>(),
              cats.defined() ? cats.data_ptr<int64_t>() : nullptr, metric, threshold, nullptr,
              claimer.data_ptr<int>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          const at::Tensor claimed = claimer != INT_MAX;
          const at::Tensor claim = claimer.to(at::kLong);
          at::Tensor root = at::where(claimed, claim, at::arange(n, long_opts));
          for (int64_t span = 1; span < 2 * n; span *= 2) {
            jump_kernel<<<cuda_blocks_for(n), kCudaThreads, 0, stream>>>(n, root.data_ptr<int64_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
          keepers = claimed.logical_not().nonzero().view(-1);
          members = claimed.nonzero().view(-1);
          // SAHI's order within a group: by the box that took them, then by index.
          at::Tensor perm = stable_order_by(order.index_select(0, members));
          perm = perm.index_select(0, stable_order_by(claim.index_select(0, members.index_select(0, perm))));
          perm = perm.index_select(0, stable_order_by(root.index_select(0, members.index_select(0, perm))));
          members = members.index_select(0, perm);
          group_of_member = root.index_select(0, members);
        }
        const at::Tensor begin = at::searchsorted(group_of_member, keepers, /*out_int32=*/false, /*right=*/false);
        const at::Tensor end = at::searchsorted(group_of_member, keepers, /*out_int32=*/false, /*right=*/true);
        const int64_t groups = keepers.size(0);
        at::Tensor out = at::empty({groups, 4}, b_acc.options());
        merge_groups_kernel<acc_t><<<cuda_blocks_for(groups), kCudaThreads, 0, stream>>>(
            groups, sb.data_ptr<acc_t>(), keepers.data_ptr<int64_t>(), members.data_ptr<int64_t>(),
            begin.data_ptr<int64_t>(), end.data_ptr<int64_t>(), metric, threshold, out.data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        keep = order.index_select(0, keepers);
        merged = out.to(boxes.scalar_type());
      });
  return {keep, merged, scores.index_select(0, keep)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> greedy_nmm_cuda(
    const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
    double match_threshold, c10::string_view metric) {
  return merge_cuda(boxes, scores, idxs, match_threshold, metric, /*greedy=*/true);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> nmm_cuda(
    const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
    double match_threshold, c10::string_view metric) {
  return merge_cuda(boxes, scores, idxs, match_threshold, metric, /*greedy=*/false);
}

}  // namespace

TORCH_LIBRARY_IMPL(scalekit, CUDA, m) {
  m.impl("greedy_nmm", TORCH_FN(greedy_nmm_cuda));
  m.impl("nmm", TORCH_FN(nmm_cuda));
}

}  // namespace scalekit
