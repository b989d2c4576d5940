// Finite boxes and scores on the device (classic ABI): one reduction each.
#pragma once

#include <ATen/ATen.h>

#include "common/check.h"

namespace scalekit {
namespace nms_detail {

inline void check_finite(const at::Tensor& boxes, const at::Tensor& scores) {
  SK_CHECK(
      at::isfinite(boxes).all().item<bool>(),
      "boxes must be finite: found NaN or infinite coordinates");
  SK_CHECK(
      at::isfinite(scores).all().item<bool>(),
      "scores must be finite: found NaN or infinite values");
}

}  // namespace nms_detail
}  // namespace scalekit
