// Argument checks shared by the CPU and CUDA NMS kernels. The Python wrappers
// check first with friendlier messages; these guard direct torch.ops calls.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <optional>
#include <string_view>

#include "nms/iou.h"

namespace scalekit {
namespace nms_detail {

inline void check_nms_args(
    const at::Tensor& boxes,
    const at::Tensor& scores,
    const std::optional<at::Tensor>& idxs,
    double iou_threshold,
    double pixel_offset) {
  TORCH_CHECK_VALUE(
      boxes.dim() == 2 && boxes.size(1) == 4,
      "boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK_VALUE(
      scores.dim() == 1 && scores.size(0) == boxes.size(0),
      "scores must have shape [N] with N = boxes.size(0) = ", boxes.size(0),
      ", got ", scores.sizes());
  TORCH_CHECK_TYPE(
      at::isFloatingType(boxes.scalar_type()),
      "boxes must be a floating point tensor, got ", boxes.scalar_type());
  TORCH_CHECK_TYPE(
      at::isFloatingType(scores.scalar_type()),
      "scores must be a floating point tensor, got ", scores.scalar_type());
  TORCH_CHECK_VALUE(
      scores.device() == boxes.device(),
      "scores must be on the device of boxes (", boxes.device(), "), got ",
      scores.device());
  if (idxs.has_value()) {
    TORCH_CHECK_VALUE(
        idxs->dim() == 1 && idxs->size(0) == boxes.size(0),
        "idxs must have shape [N] with N = boxes.size(0) = ", boxes.size(0),
        ", got ", idxs->sizes());
    TORCH_CHECK_TYPE(
        idxs->scalar_type() == at::kLong,
        "idxs must be an int64 tensor, got ", idxs->scalar_type());
    TORCH_CHECK_VALUE(
        idxs->device() == boxes.device(),
        "idxs must be on the device of boxes (", boxes.device(), "), got ",
        idxs->device());
  }
  TORCH_CHECK_VALUE(!std::isnan(iou_threshold), "iou_threshold must not be NaN");
  TORCH_CHECK_VALUE(
      std::isfinite(pixel_offset) && pixel_offset >= 0,
      "pixel_offset must be a finite number >= 0 (0 or 1), got ", pixel_offset);
}

inline SoftNMSMethod parse_method(std::string_view method) {
  if (method == "linear") return SoftNMSMethod::kLinear;
  if (method == "gaussian") return SoftNMSMethod::kGaussian;
  if (method == "hard") return SoftNMSMethod::kHard;
  TORCH_CHECK_VALUE(
      false, "method must be one of 'linear', 'gaussian', 'hard', got '",
      std::string(method), "'");
}

// All soft_nms arguments; returns the parsed method.
inline SoftNMSMethod check_soft_nms_args(
    const at::Tensor& boxes,
    const at::Tensor& scores,
    const std::optional<at::Tensor>& idxs,
    double iou_threshold,
    double sigma,
    double score_threshold,
    c10::string_view method,
    double pixel_offset) {
  check_nms_args(boxes, scores, idxs, iou_threshold, pixel_offset);
  TORCH_CHECK_VALUE(
      std::isfinite(sigma) && sigma > 0, "sigma must be a finite number > 0, got ",
      sigma);
  TORCH_CHECK_VALUE(!std::isnan(score_threshold), "score_threshold must not be NaN");
  return parse_method(std::string_view(method.data(), method.size()));
}

// One reduction (and one device sync on CUDA) for both tensors.
inline void check_finite(const at::Tensor& boxes, const at::Tensor& scores) {
  TORCH_CHECK_VALUE(
      at::isfinite(boxes).all().item<bool>(),
      "boxes must be finite: found NaN or infinite coordinates");
  TORCH_CHECK_VALUE(
      at::isfinite(scores).all().item<bool>(),
      "scores must be finite: found NaN or infinite values");
}

}  // namespace nms_detail
}  // namespace scalekit
