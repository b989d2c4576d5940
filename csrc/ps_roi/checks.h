// Argument checks shared by the CPU and CUDA position-sensitive RoI kernels.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace scalekit {
namespace ps_roi {

inline void check_input_rois(const at::Tensor& input, const at::Tensor& rois) {
  TORCH_CHECK_VALUE(input.dim() == 4, "input must have shape [N, C, H, W], got ", input.sizes());
  TORCH_CHECK_VALUE(
      rois.dim() == 2 && rois.size(1) == 5,
      "boxes must have shape [K, 5] (batch index, x1, y1, x2, y2), got ", rois.sizes());
  TORCH_CHECK_TYPE(
      at::isFloatingType(input.scalar_type()), "input must be a floating point tensor, got ",
      input.scalar_type());
  TORCH_CHECK_TYPE(
      rois.scalar_type() == input.scalar_type(), "boxes must have the dtype of input (",
      input.scalar_type(), "), got ", rois.scalar_type());
  TORCH_CHECK_VALUE(
      rois.device() == input.device(), "boxes must be on the device of input (", input.device(),
      "), got ", rois.device());
}

inline void check_pooled(int64_t channels, int64_t pooled_h, int64_t pooled_w, int64_t group_h,
                         int64_t group_w) {
  TORCH_CHECK_VALUE(pooled_h > 0 && pooled_w > 0, "output_size must be positive, got (",
                    pooled_h, ", ", pooled_w, ")");
  TORCH_CHECK_VALUE(group_h > 0 && group_w > 0, "group_size must be positive, got (", group_h,
                    ", ", group_w, ")");
  TORCH_CHECK_VALUE(
      channels % (group_h * group_w) == 0, "input channels (", channels,
      ") must be divisible by ", group_h, " * ", group_w,
      " (one channel per bin position and output channel)");
}

// Finite coordinates and integral batch indices in [0, batch): one reduction
// (one device sync on CUDA); the offending row is looked up only on error.
inline void check_roi_values(const at::Tensor& rois, int64_t batch) {
  if (rois.size(0) == 0) return;
  const at::Tensor idx = rois.select(1, 0);
  const at::Tensor bad = idx.lt(0) | idx.ge(batch) | idx.ne(idx.trunc()) |
      at::isfinite(rois).logical_not().any(1);
  if (!bad.any().item<bool>()) return;
  const int64_t k = bad.nonzero().select(1, 0)[0].item<int64_t>();
  const at::Tensor row = rois[k].to(at::kDouble).cpu().contiguous();
  const double* v = row.data_ptr<double>();
  TORCH_CHECK_VALUE(
      false, "boxes[", k, "] = (", v[0], ", ", v[1], ", ", v[2], ", ", v[3], ", ", v[4], ")",
      " must have finite coordinates and an integral batch index in [0, ", batch,
      ") (input has ", batch, " images)");
}

inline void check_offset(const std::optional<at::Tensor>& offset, const at::Tensor& input,
                         int64_t rois, int64_t part_h, int64_t part_w) {
  if (!offset.has_value()) return;
  TORCH_CHECK_VALUE(
      offset->dim() == 4 && offset->size(0) == rois && offset->size(1) == 2 &&
          offset->size(2) == part_h && offset->size(3) == part_w,
      "offset must have shape [K, 2, part_h, part_w] = [", rois, ", 2, ", part_h, ", ", part_w,
      "], got ", offset->sizes());
  TORCH_CHECK_TYPE(offset->scalar_type() == input.scalar_type(),
                   "offset must have the dtype of input (", input.scalar_type(), "), got ",
                   offset->scalar_type());
  TORCH_CHECK_VALUE(offset->device() == input.device(), "offset must be on the device of input (",
                    input.device(), "), got ", offset->device());
}

}  // namespace ps_roi
}  // namespace scalekit
