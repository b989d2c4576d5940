// Argument checks shared by the CPU (stable ABI) and CUDA (classic ABI) NMS
// kernels, written once for both tensor types (common/check.h). The Python
// wrappers check first with friendlier messages; these guard direct torch.ops
// calls. The finiteness check needs a reduction and lives with each device
// (nms/cpu/finite.h, nms/cuda/finite.h).
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <string_view>

#include "common/check.h"
#include "nms/iou.h"

namespace scalekit {
namespace nms_detail {

template <typename Tensor>
void check_nms_args(
    const Tensor& boxes,
    const Tensor& scores,
    const std::optional<Tensor>& idxs,
    double iou_threshold,
    double pixel_offset) {
  SK_CHECK(
      boxes.dim() == 2 && boxes.size(1) == 4,
      "boxes must have shape [N, 4], got ", shape(boxes));
  SK_CHECK(
      scores.dim() == 1 && scores.size(0) == boxes.size(0),
      "scores must have shape [N] with N = boxes.size(0) = ", boxes.size(0),
      ", got ", shape(scores));
  SK_CHECK(
      is_floating(boxes.scalar_type()),
      "boxes must be a floating point tensor, got ", boxes.scalar_type());
  SK_CHECK(
      is_floating(scores.scalar_type()),
      "scores must be a floating point tensor, got ", scores.scalar_type());
  SK_CHECK(
      scores.device() == boxes.device(),
      "scores must be on the device of boxes (", device_name(boxes.device()), "), got ",
      device_name(scores.device()));
  if (idxs.has_value()) {
    SK_CHECK(
        idxs->dim() == 1 && idxs->size(0) == boxes.size(0),
        "idxs must have shape [N] with N = boxes.size(0) = ", boxes.size(0),
        ", got ", shape(*idxs));
    SK_CHECK(
        idxs->scalar_type() == c10::ScalarType::Long,
        "idxs must be an int64 tensor, got ", idxs->scalar_type());
    SK_CHECK(
        idxs->device() == boxes.device(),
        "idxs must be on the device of boxes (", device_name(boxes.device()), "), got ",
        device_name(idxs->device()));
  }
  SK_CHECK(!std::isnan(iou_threshold), "iou_threshold must not be NaN");
  SK_CHECK(
      std::isfinite(pixel_offset) && pixel_offset >= 0,
      "pixel_offset must be a finite number >= 0 (0 or 1), got ", pixel_offset);
}

inline SoftNMSMethod parse_method(std::string_view method) {
  if (method == "linear") return SoftNMSMethod::kLinear;
  if (method == "gaussian") return SoftNMSMethod::kGaussian;
  if (method == "hard") return SoftNMSMethod::kHard;
  SK_CHECK(
      false, "method must be one of 'linear', 'gaussian', 'hard', got '",
      std::string(method), "'");
  return SoftNMSMethod::kLinear;  // not reached
}

// All soft_nms arguments; returns the parsed method.
template <typename Tensor>
SoftNMSMethod check_soft_nms_args(
    const Tensor& boxes,
    const Tensor& scores,
    const std::optional<Tensor>& idxs,
    double iou_threshold,
    double sigma,
    double score_threshold,
    std::string_view method,
    double pixel_offset) {
  check_nms_args(boxes, scores, idxs, iou_threshold, pixel_offset);
  SK_CHECK(
      std::isfinite(sigma) && sigma > 0, "sigma must be a finite number > 0, got ",
      sigma);
  SK_CHECK(!std::isnan(score_threshold), "score_threshold must not be NaN");
  return parse_method(method);
}

}  // namespace nms_detail
}  // namespace scalekit
