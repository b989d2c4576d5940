// Argument checks shared by the CPU (stable ABI) and CUDA (classic ABI)
// position-sensitive RoI kernels, written once for both tensor types
// (common/check.h). The check of the RoIs' values needs a reduction and lives
// with each device (check_roi_values in ps_roi/{cpu,cuda}/).
#pragma once

#include <cmath>
#include <optional>

#include "common/check.h"

namespace scalekit {
namespace ps_roi {

template <typename Tensor>
void check_input_rois(const Tensor& input, const Tensor& rois) {
  SK_CHECK(input.dim() == 4, "input must have shape [N, C, H, W], got ", shape(input));
  SK_CHECK(
      rois.dim() == 2 && rois.size(1) == 5,
      "boxes must have shape [K, 5] (batch index, x1, y1, x2, y2), got ", shape(rois));
  SK_CHECK(
      is_floating(input.scalar_type()), "input must be a floating point tensor, got ",
      input.scalar_type());
  SK_CHECK(
      rois.scalar_type() == input.scalar_type(), "boxes must have the dtype of input (",
      input.scalar_type(), "), got ", rois.scalar_type());
  SK_CHECK(
      rois.device() == input.device(), "boxes must be on the device of input (", device_name(input.device()),
      "), got ", device_name(rois.device()));
}

inline void check_pooled(int64_t channels, int64_t pooled_h, int64_t pooled_w, int64_t group_h,
                         int64_t group_w) {
  SK_CHECK(pooled_h > 0 && pooled_w > 0, "output_size must be positive, got (",
                    pooled_h, ", ", pooled_w, ")");
  SK_CHECK(group_h > 0 && group_w > 0, "group_size must be positive, got (", group_h,
                    ", ", group_w, ")");
  SK_CHECK(
      channels % (group_h * group_w) == 0, "input channels (", channels,
      ") must be divisible by ", group_h, " * ", group_w,
      " (one channel per bin position and output channel)");
}

// The error for RoI row k (values v[0..4]) that is not finite or whose batch
// index is not an integer in [0, batch): each device finds the first such row.
// A value a float holds exactly is printed with a float's digits (float32 RoIs reach here
// widened to double: 1e30f is printed "1e+30", not 1.0000000150474662e+30).
inline std::string roi_value(double v) {
  const float f = static_cast<float>(v);
  return static_cast<double>(f) == v ? str_cat(f) : str_cat(v);
}

[[noreturn]] inline void bad_roi(int64_t k, const double* v, int64_t batch) {
  throw std::invalid_argument(str_cat(
      "boxes[", k, "] = (", roi_value(v[0]), ", ", roi_value(v[1]), ", ", roi_value(v[2]), ", ",
      roi_value(v[3]), ", ", roi_value(v[4]), ")",
      " must have finite coordinates and an integral batch index in [0, ", batch,
      ") (input has ", batch, " images)"));
}

template <typename Tensor>
void check_offset(const std::optional<Tensor>& offset, const Tensor& input,
                         int64_t rois, int64_t part_h, int64_t part_w) {
  if (!offset.has_value()) return;
  SK_CHECK(
      offset->dim() == 4 && offset->size(0) == rois && offset->size(1) == 2 &&
          offset->size(2) == part_h && offset->size(3) == part_w,
      "offset must have shape [K, 2, part_h, part_w] = [", rois, ", 2, ", part_h, ", ", part_w,
      "], got ", shape(*offset));
  SK_CHECK(offset->scalar_type() == input.scalar_type(),
                   "offset must have the dtype of input (", input.scalar_type(), "), got ",
                   offset->scalar_type());
  SK_CHECK(offset->device() == input.device(), "offset must be on the device of input (",
                    device_name(input.device()), "), got ", device_name(offset->device()));
}

}  // namespace ps_roi
}  // namespace scalekit
