// Finite boxes and scores, on the CPU (stable ABI): a loop over the values.
#pragma once

#include <cmath>

#include "common/stable.h"

namespace scalekit {
namespace nms_detail {

inline bool all_finite(const Tensor& t) {
  const Tensor c = as_contiguous(t);
  const int64_t n = c.numel();
  bool finite = true;
  dispatch_floating(c.scalar_type(), "boxes", [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    const scalar_t* v = c.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < n && finite; ++i) finite = std::isfinite(static_cast<acc_type<scalar_t>>(v[i]));
  });
  return finite;
}

inline void check_finite(const Tensor& boxes, const Tensor& scores) {
  SK_CHECK(all_finite(boxes), "boxes must be finite: found NaN or infinite coordinates");
  SK_CHECK(all_finite(scores), "scores must be finite: found NaN or infinite values");
}

}  // namespace nms_detail
}  // namespace scalekit
