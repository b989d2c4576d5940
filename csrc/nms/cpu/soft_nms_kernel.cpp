// Soft-NMS (Bodla, Singh, Chellappa, Davis, ICCV 2017) on the CPU.
//
// The paper's loop selects the highest-scoring remaining box and decays every
// other box by a function of its IoU with it. Here the selection is a max-heap
// with lazy deletion (a decayed box is pushed again with its new score) and a
// selected box decays only the boxes its spatial window holds: the boxes a
// decay can change are exactly those with positive overlap (gaussian) or IoU
// above the threshold (linear, hard). Work is O(N log N + overlapping pairs)
// instead of the paper's O(N^2).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <queue>
#include <tuple>

#include "nms/cpu/spatial_index.h"
#include "nms/iou.h"
#include "nms/nms_checks.h"

namespace scalekit {
namespace {

using namespace nms_detail;

template <typename scalar_t, typename acc_t>
std::tuple<at::Tensor, at::Tensor> soft_nms_cpu_impl(
    const at::Tensor& boxes, const at::Tensor& scores, const int64_t* idxs,
    double iou_threshold, double sigma, double score_threshold,
    SoftNMSMethod method, double pixel_offset) {
  const int64_t n = boxes.size(0);
  const auto s = build_spatial_index<scalar_t, acc_t>(
      boxes, idxs, static_cast<acc_t>(pixel_offset));
  const acc_t* in_scores = scores.data_ptr<acc_t>();

  // Heap entries (score, -index, position): the top is the highest score,
  // ties to the lowest index. An entry is stale when its score is no longer
  // the box's current score or the box is gone.
  using Entry = std::tuple<acc_t, int64_t, int64_t>;
  std::vector<Entry> entries;
  std::vector<acc_t> score(n);
  std::vector<uint8_t> alive(n);
  entries.reserve(n);
  for (int64_t p = 0; p < n; ++p) {
    score[p] = in_scores[s.index[p]];
    alive[p] = !(static_cast<double>(score[p]) < score_threshold);
    if (alive[p]) entries.emplace_back(score[p], -s.index[p], p);
  }
  std::priority_queue<Entry> heap(std::less<Entry>(), std::move(entries));

  const acc_t threshold = threshold_as<acc_t>(iou_threshold);
  const acc_t sig = static_cast<acc_t>(sigma);
  // Gaussian decay touches only boxes with IoU > 0; linear and hard decay only
  // boxes with IoU > iou_threshold, which needs overlap when the threshold >= 0.
  const bool prune = method == SoftNMSMethod::kGaussian || iou_threshold >= 0;
  std::vector<int64_t> keep;
  std::vector<acc_t> kept_scores;

  while (!heap.empty()) {
    const auto [top_score, neg_index, p] = heap.top();
    heap.pop();
    if (!alive[p] || top_score != score[p]) continue;
    alive[p] = 0;
    keep.push_back(-neg_index);
    kept_scores.push_back(top_score);
    const auto [lo, hi] = prune ? s.window(p) : s.segment(p);
    for (int64_t j = lo; j < hi; ++j) {
      if (!alive[j]) continue;
      const acc_t iou = box_iou(
          s.x1[p], s.y1[p], s.x2[p], s.y2[p], s.area[p], s.x1[j], s.y1[j], s.x2[j],
          s.y2[j], s.area[j], s.off);
      const acc_t weight = soft_nms_weight(method, iou, threshold, sig);
      if (weight == acc_t(1)) continue;
      if (method == SoftNMSMethod::kHard) {
        alive[j] = 0;  // removed, as by greedy NMS
        continue;
      }
      score[j] = score[j] * weight;
      if (static_cast<double>(score[j]) < score_threshold) {
        alive[j] = 0;
      } else {
        heap.emplace(score[j], -s.index[j], j);
      }
    }
  }
  return {
      at::tensor(keep, boxes.options().dtype(at::kLong)),
      at::tensor(kept_scores, scores.options())};
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(
    const at::Tensor& boxes, const at::Tensor& scores,
    const std::optional<at::Tensor>& idxs, double iou_threshold, double sigma,
    double score_threshold, c10::string_view method, double pixel_offset) {
  const SoftNMSMethod m = check_soft_nms_args(
      boxes, scores, idxs, iou_threshold, sigma, score_threshold, method, pixel_offset);
  if (boxes.size(0) == 0) {
    return {at::empty({0}, boxes.options().dtype(at::kLong)), at::empty({0}, scores.options())};
  }
  check_finite(boxes, scores);
  const at::Tensor b = boxes.contiguous();
  const at::Tensor c = idxs.has_value() ? idxs->contiguous() : at::Tensor();
  const int64_t* cat = c.defined() ? c.data_ptr<int64_t>() : nullptr;
  at::Tensor keep, kept_scores;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, b.scalar_type(), "scalekit_soft_nms_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto acc_scores =
            scores.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
        std::tie(keep, kept_scores) = soft_nms_cpu_impl<scalar_t, acc_t>(
            b, acc_scores, cat, iou_threshold, sigma, score_threshold, m, pixel_offset);
      });
  return {keep, kept_scores.to(scores.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(scalekit, CPU, m) {
  m.impl("soft_nms", TORCH_FN(soft_nms_cpu));
}

}  // namespace scalekit
