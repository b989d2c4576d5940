// Non-maximum merging (SAHI's GREEDYNMM and NMM): the rules shared by the CPU
// and CUDA kernels, written once so that both decide every match alike.
//
// A pair matches when its metric is >= the threshold. The metric is IoU or IoS
// (intersection over the smaller area), with areas (x2 - x1) * (y2 - y1) and 0
// where the denominator is not positive (two empty boxes), as SAHI computes it.
// Boxes are visited by decreasing score, ties by (x1, y1, x2, y2) ascending,
// then by index: SAHI's order.
#pragma once

#include <torch/headeronly/macros/Macros.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string_view>

#include "nms/iou.h"
#include "nms/nms_checks.h"

namespace scalekit {
namespace merge_detail {

using nms_detail::max_;
using nms_detail::min_;
using nms_detail::mul_rn;

enum class MatchMetric : int { kIoU, kIoS };

template <typename T>
C10_HOST_DEVICE inline T merge_area(T x1, T y1, T x2, T y2) {
  return mul_rn(x2 - x1, y2 - y1);
}

// IoU or IoS of boxes a and b given their areas; 0 where the denominator is <= 0.
template <typename T>
C10_HOST_DEVICE inline T match_value(
    MatchMetric metric, T ax1, T ay1, T ax2, T ay2, T aarea, T bx1, T by1, T bx2,
    T by2, T barea) {
  const T w = max_(T(0), min_(ax2, bx2) - max_(ax1, bx1));
  const T h = max_(T(0), min_(ay2, by2) - max_(ay1, by1));
  const T inter = mul_rn(w, h);
  const T denom = metric == MatchMetric::kIoU ? aarea + barea - inter : min_(aarea, barea);
  // Divided unconditionally, then selected: a guarded division is a branch
  // the compiler may not vectorise (it could trap), a select is not.
  const T ratio = inter / denom;
  return denom > T(0) ? ratio : T(0);
}

// True when box a comes before box b in the visiting order (a and b distinct
// indices): higher score first, then (x1, y1, x2, y2) ascending, then index.
template <typename T>
C10_HOST_DEVICE inline bool visits_before(
    T as, T ax1, T ay1, T ax2, T ay2, int64_t ai, T bs, T bx1, T by1, T bx2, T by2,
    int64_t bi) {
  if (as != bs) return as > bs;
  if (ax1 != bx1) return ax1 < bx1;
  if (ay1 != by1) return ay1 < by1;
  if (ax2 != bx2) return ax2 < bx2;
  if (ay2 != by2) return ay2 < by2;
  return ai < bi;
}

// NMM's claim rule: box a may take box b into its group when b scores lower,
// or scores the same and does not come before a by coordinates (SAHI's
// "dominates"). For a later box b of equal score this means equal coordinates.
template <typename T>
C10_HOST_DEVICE inline bool dominates(
    T as, T ax1, T ay1, T ax2, T ay2, T bs, T bx1, T by1, T bx2, T by2) {
  if (as != bs) return as > bs;
  if (ax1 != bx1) return bx1 < ax1;
  if (ay1 != by1) return by1 < ay1;
  if (ax2 != bx2) return bx2 < ax2;
  return !(ay2 < by2);
}

// The threshold in the precision of the metric, rounded to nearest (as
// SAHI's candidate search compares a float32 metric with a Python float): a
// metric that is the nearest float to an exact 0.7 matches a threshold of 0.7.
template <typename T>
inline T merge_threshold(double t) {
  return static_cast<T>(t);
}

inline MatchMetric parse_metric(std::string_view m) {
  if (m == "iou") return MatchMetric::kIoU;
  if (m == "ios") return MatchMetric::kIoS;
  SK_CHECK(false, "metric must be 'iou' or 'ios', got '", std::string(m), "'");
  return MatchMetric::kIoU;  // not reached
}

// Every argument of greedy_nmm / nmm; returns the parsed metric. The tensor
// checks are NMS's (one rule, one place).
template <typename Tensor>
MatchMetric check_merge_args(
    const Tensor& boxes, const Tensor& scores,
    const std::optional<Tensor>& idxs, double match_threshold,
    std::string_view metric) {
  nms_detail::check_nms_args(boxes, scores, idxs, /*iou_threshold=*/0.0, /*pixel_offset=*/0.0);
  SK_CHECK(!std::isnan(match_threshold), "match_threshold must not be NaN");
  SK_CHECK(
      boxes.size(0) < std::numeric_limits<int32_t>::max(), "too many boxes: ", boxes.size(0));
  return parse_metric(metric);
}

}  // namespace merge_detail
}  // namespace scalekit
