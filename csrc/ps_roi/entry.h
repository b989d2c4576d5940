// The six schema entry points of the position-sensitive RoI ops, written once
// and instantiated per device (each registers them with its own library:
// stable ABI on the CPU, classic on CUDA). Impl provides
//   using Tensor = the device's tensor type;
//   static Tensor forward(input, rois, offset, OpArgs)
//   static std::tuple<Tensor, Tensor> backward(grad, input, rois, offset,
//       OpArgs, batch, channels, height, width, bool offset_grad)
#pragma once

#include <optional>
#include <tuple>

#include "ps_roi/op_args.h"

namespace scalekit {
namespace ps_roi {

template <typename Impl>
struct Entry {
  using Tensor = typename Impl::Tensor;

  static Tensor ps_roi_pool(const Tensor& input, const Tensor& rois,
                                double spatial_scale, int64_t ph, int64_t pw) {
    return Impl::forward(input, rois, std::nullopt, pool_args(spatial_scale, ph, pw));
  }

  static Tensor ps_roi_pool_backward(const Tensor& grad, const Tensor& rois,
                                         double spatial_scale, int64_t ph, int64_t pw,
                                         int64_t batch, int64_t channels, int64_t height,
                                         int64_t width) {
    return std::get<0>(Impl::backward(grad, std::nullopt, rois, std::nullopt,
                                      pool_args(spatial_scale, ph, pw), batch, channels, height,
                                      width, false));
  }

  static Tensor ps_roi_align(const Tensor& input, const Tensor& rois,
                                 double spatial_scale, int64_t ph, int64_t pw,
                                 int64_t sampling_ratio, bool aligned) {
    return Impl::forward(input, rois, std::nullopt,
                         align_args(spatial_scale, ph, pw, sampling_ratio, aligned));
  }

  static Tensor ps_roi_align_backward(const Tensor& grad, const Tensor& rois,
                                          double spatial_scale, int64_t ph, int64_t pw,
                                          int64_t sampling_ratio, bool aligned, int64_t batch,
                                          int64_t channels, int64_t height, int64_t width) {
    return std::get<0>(Impl::backward(grad, std::nullopt, rois, std::nullopt,
                                      align_args(spatial_scale, ph, pw, sampling_ratio, aligned),
                                      batch, channels, height, width, false));
  }

  static Tensor deform_ps_roi_pool(const Tensor& input, const Tensor& rois,
                                       const std::optional<Tensor>& offset,
                                       double spatial_scale, int64_t ph, int64_t pw, int64_t gh,
                                       int64_t gw, int64_t part_h, int64_t part_w,
                                       int64_t sample_per_part, double trans_std) {
    return Impl::forward(input, rois, offset,
                         deform_args(spatial_scale, ph, pw, gh, gw, part_h, part_w,
                                     sample_per_part, trans_std));
  }

  static std::tuple<Tensor, Tensor> deform_ps_roi_pool_backward(
      const Tensor& grad, const Tensor& input, const Tensor& rois,
      const std::optional<Tensor>& offset, double spatial_scale, int64_t ph, int64_t pw,
      int64_t gh, int64_t gw, int64_t part_h, int64_t part_w, int64_t sample_per_part,
      double trans_std) {
    return Impl::backward(grad, input, rois, offset,
                          deform_args(spatial_scale, ph, pw, gh, gw, part_h, part_w,
                                      sample_per_part, trans_std),
                          input.size(0), input.size(1), input.size(2), input.size(3), true);
  }
};

}  // namespace ps_roi
}  // namespace scalekit
