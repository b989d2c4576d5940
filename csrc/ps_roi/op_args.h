// Schema arguments of the position-sensitive RoI ops, gathered into one
// struct and checked once for the CPU and CUDA kernels.
#pragma once

#include <optional>

#include "ps_roi/checks.h"
#include "ps_roi/geometry.h"

namespace scalekit {
namespace ps_roi {

struct OpArgs {
  Mode mode;
  double spatial_scale;
  int64_t pooled_h, pooled_w, group_h, group_w, part_h, part_w;
  int64_t sampling_ratio = 0;
  bool aligned = false;
  int64_t sample_per_part = 0;
  double trans_std = 0;

  template <typename T>
  Params<T> params(int64_t height, int64_t width) const {
    return Params<T>{mode,     static_cast<T>(spatial_scale), height,  width,
                     pooled_h, pooled_w, group_h, group_w, part_h, part_w,
                     sampling_ratio, aligned, sample_per_part, static_cast<T>(trans_std)};
  }
  int64_t groups() const { return group_h * group_w; }
  int64_t parts() const { return part_h * part_w; }
};

inline OpArgs pool_args(double spatial_scale, int64_t pooled_h, int64_t pooled_w) {
  return OpArgs{Mode::kPool, spatial_scale, pooled_h, pooled_w, pooled_h, pooled_w, 1, 1};
}

inline OpArgs align_args(double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                         int64_t sampling_ratio, bool aligned) {
  OpArgs a{Mode::kAlign, spatial_scale, pooled_h, pooled_w, pooled_h, pooled_w, 1, 1};
  a.sampling_ratio = sampling_ratio;
  a.aligned = aligned;
  return a;
}

inline OpArgs deform_args(double spatial_scale, int64_t pooled_h, int64_t pooled_w,
                          int64_t group_h, int64_t group_w, int64_t part_h, int64_t part_w,
                          int64_t sample_per_part, double trans_std) {
  OpArgs a{Mode::kDeform, spatial_scale, pooled_h, pooled_w, group_h, group_w, part_h, part_w};
  a.sample_per_part = sample_per_part;
  a.trans_std = trans_std;
  return a;
}

// Sample counts within kMaxSamplesPerSide (forward and backward alike).
inline void check_samples(const OpArgs& a) {
  if (a.mode == Mode::kAlign) {
    SK_CHECK(a.sampling_ratio <= kMaxSamplesPerSide, "sampling_ratio must be <= ",
                      kMaxSamplesPerSide, " (samples per bin side; <= 0 for adaptive), got ",
                      a.sampling_ratio);
  }
  if (a.mode == Mode::kDeform) {
    SK_CHECK(a.sample_per_part > 0 && a.sample_per_part <= kMaxSamplesPerSide,
                      "sample_per_part must be in [1, ", kMaxSamplesPerSide, "], got ",
                      a.sample_per_part);
  }
}

// Checks for a forward call but the RoIs' values (check_roi_values, per device,
// next); returns the number of output channels.
template <typename Tensor>
int64_t check_forward(const Tensor& input, const Tensor& rois,
                      const std::optional<Tensor>& offset, const OpArgs& a) {
  check_input_rois(input, rois);
  check_pooled(input.size(1), a.pooled_h, a.pooled_w, a.group_h, a.group_w);
  SK_CHECK(std::isfinite(a.spatial_scale) && a.spatial_scale > 0,
                    "spatial_scale must be a finite number > 0, got ", a.spatial_scale);
  if (a.mode == Mode::kDeform) {
    SK_CHECK(a.part_h > 0 && a.part_w > 0, "part_size must be positive, got (",
                      a.part_h, ", ", a.part_w, ")");
    SK_CHECK(std::isfinite(a.trans_std), "trans_std must be finite, got ", a.trans_std);
    check_offset(offset, input, rois.size(0), a.part_h, a.part_w);
  }
  check_samples(a);
  return input.size(1) / a.groups();
}

// Checks for a backward call but the RoIs' values (check_roi_values, per device, next).
// torch.ops.scalekit._*_backward can be called directly, without the forward's checks, so
// they are all made again: a RoI's batch index, the offsets' shape and the map's sizes decide
// where the kernels write. Deformable pooling passes its input, the others its sizes.
template <typename Tensor>
void check_backward(const Tensor& grad, const std::optional<Tensor>& input, const Tensor& rois,
                    const std::optional<Tensor>& offset, const OpArgs& a, int64_t batch,
                    int64_t channels, int64_t height, int64_t width) {
  if (input.has_value()) {
    check_forward(*input, rois, offset, a);
  } else {
    SK_CHECK(rois.dim() == 2 && rois.size(1) == 5,
             "boxes must have shape [K, 5] (batch index, x1, y1, x2, y2), got ", shape(rois));
    SK_CHECK(rois.device() == grad.device(), "boxes must be on the device of grad (",
             device_name(grad.device()), "), got ", device_name(rois.device()));
    SK_CHECK(batch >= 0 && channels >= 0 && height >= 0 && width >= 0,
             "the input's batch size, channels, height and width must be >= 0, got (", batch, ", ",
             channels, ", ", height, ", ", width, ")");
    check_pooled(channels, a.pooled_h, a.pooled_w, a.group_h, a.group_w);
    SK_CHECK(std::isfinite(a.spatial_scale) && a.spatial_scale > 0,
             "spatial_scale must be a finite number > 0, got ", a.spatial_scale);
    check_samples(a);
  }
  SK_CHECK(
      grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(2) == a.pooled_h &&
          grad.size(3) == a.pooled_w && grad.size(1) * a.groups() == channels,
      "grad must have shape [K, C, pooled_h, pooled_w], got ", shape(grad));
  // The forward's output dtype (the kernels read the RoIs in grad's working precision: a
  // float64 batch index of 0.9999999999 would round to 1 in float32).
  SK_CHECK(
      grad.scalar_type() == rois.scalar_type(), "grad must have the dtype of boxes (",
      rois.scalar_type(), "), got ", grad.scalar_type());
}

}  // namespace ps_roi
}  // namespace scalekit
