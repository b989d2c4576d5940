// Greedy NMS on the CPU.
//
// Same result as torchvision's kernel, much less work: boxes are visited in
// decreasing score order as usual, but a kept box only tests the boxes of its
// category whose x-extent can overlap it (a binary search in the spatial
// index), with a branch-free loop the compiler vectorises, split over threads
// when the window is large.
#include "common/stable.h"
#include "nms/cpu/finite.h"
#include "nms/cpu/spatial_index.h"
#include "nms/iou.h"
#include "nms/nms_checks.h"

namespace scalekit {
namespace {

using namespace nms_detail;

constexpr int64_t kParallelGrain = 16384;

// removed[j] |= rank[j] > r && IoU(box, j) > threshold, for j in [lo, hi).
template <typename acc_t>
void suppress_window(
    const SpatialIndex<acc_t>& s, const int32_t* __restrict rank,
    uint8_t* __restrict removed, int64_t p, int32_t r, acc_t threshold,
    int64_t lo, int64_t hi) {
  const acc_t px1 = s.x1[p], py1 = s.y1[p], px2 = s.x2[p], py2 = s.y2[p];
  const acc_t parea = s.area[p], off = s.off;
  const acc_t* __restrict x1 = s.x1.data();
  const acc_t* __restrict y1 = s.y1.data();
  const acc_t* __restrict x2 = s.x2.data();
  const acc_t* __restrict y2 = s.y2.data();
  const acc_t* __restrict area = s.area.data();
  for (int64_t j = lo; j < hi; ++j) {
    const acc_t iou =
        box_iou(px1, py1, px2, py2, parea, x1[j], y1[j], x2[j], y2[j], area[j], off);
    removed[j] |= static_cast<uint8_t>((iou > threshold) & (rank[j] > r));
  }
}

template <typename scalar_t, typename acc_t>
Tensor nms_cpu_impl(
    const Tensor& boxes, const Tensor& scores, const int64_t* idxs,
    double iou_threshold, double pixel_offset) {
  const int64_t n = boxes.size(0);
  const auto s = build_spatial_index<scalar_t, acc_t>(
      boxes.const_data_ptr<scalar_t>(), n, idxs, static_cast<acc_t>(pixel_offset));
  // Decreasing score, ties by increasing index.
  const Tensor sc = as_contiguous(scores);
  const std::vector<int64_t> order_v = argsort_descending(sc.const_data_ptr<acc_t>(), n);
  const int64_t* order = order_v.data();
  std::vector<int32_t> rank(n);
  for (int64_t r = 0; r < n; ++r) rank[s.position[order[r]]] = static_cast<int32_t>(r);
  std::vector<uint8_t> removed(n, 0);
  std::vector<int64_t> keep;
  const acc_t threshold = threshold_as<acc_t>(iou_threshold);
  // With a negative threshold even disjoint boxes (IoU 0) suppress each other.
  const bool prune = iou_threshold >= 0;

  for (int64_t r = 0; r < n; ++r) {
    const int64_t p = s.position[order[r]];
    if (removed[p]) continue;
    keep.push_back(order[r]);
    const auto [lo, hi] = prune ? s.window(p) : s.segment(p);
    if (hi - lo < 2 * kParallelGrain) {
      suppress_window(s, rank.data(), removed.data(), p, int32_t(r), threshold, lo, hi);
    } else {
      torch::stable::parallel_for(lo, hi, kParallelGrain, [&](int64_t b, int64_t e) {
        suppress_window(s, rank.data(), removed.data(), p, int32_t(r), threshold, b, e);
      });
    }
  }
  return from_vector(keep, ScalarType::Long);
}

Tensor nms_cpu(
    const Tensor& boxes, const Tensor& scores,
    const std::optional<Tensor>& idxs, double iou_threshold,
    double pixel_offset) {
  check_nms_args(boxes, scores, idxs, iou_threshold, pixel_offset);
  SK_CHECK(
      boxes.size(0) < std::numeric_limits<int32_t>::max(), "too many boxes");
  if (boxes.size(0) == 0) return new_empty({0}, ScalarType::Long);
  check_finite(boxes, scores);
  const Tensor b = as_contiguous(boxes);
  const std::optional<Tensor> c = idxs.has_value() ? std::optional(as_contiguous(*idxs)) : std::nullopt;
  const int64_t* cat = c.has_value() ? c->const_data_ptr<int64_t>() : nullptr;
  Tensor keep;
  dispatch_floating(b.scalar_type(), "boxes", [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    using acc_t = acc_type<scalar_t>;
    keep = nms_cpu_impl<scalar_t, acc_t>(
        b, to_dtype(scores, scalar_type_of<acc_t>()), cat, iou_threshold, pixel_offset);
  });
  return keep;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(scalekit, CPU, m) {
  m.impl("nms", TORCH_BOX(&nms_cpu));
}

}  // namespace scalekit
