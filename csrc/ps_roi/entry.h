// The six schema entry points of the position-sensitive RoI ops, written once
// and instantiated per device. Impl provides
//   static at::Tensor forward(input, rois, offset, OpArgs)
//   static std::tuple<at::Tensor, at::Tensor> backward(grad, input, rois, offset,
//       OpArgs, batch, channels, height, width, bool offset_grad)
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>

#include "ps_roi/op_args.h"

namespace scalekit {
namespace ps_roi {

template <typename Impl>
struct Entry {
  static at::Tensor ps_roi_pool(const at::Tensor& input, const at::Tensor& rois,
                                double spatial_scale, int64_t ph, int64_t pw) {
    return Impl::forward(input, rois, std::nullopt, pool_args(spatial_scale, ph, pw));
  }

  static at::Tensor ps_roi_pool_backward(const at::Tensor& grad, const at::Tensor& rois,
                                         double spatial_scale, int64_t ph, int64_t pw,
                                         int64_t batch, int64_t channels, int64_t height,
                                         int64_t width) {
    return std::get<0>(Impl::backward(grad, std::nullopt, rois, std::nullopt,
                                      pool_args(spatial_scale, ph, pw), batch, channels, height,
                                      width, false));
  }

  static at::Tensor ps_roi_align(const at::Tensor& input, const at::Tensor& rois,
                                 double spatial_scale, int64_t ph, int64_t pw,
                                 int64_t sampling_ratio, bool aligned) {
    return Impl::forward(input, rois, std::nullopt,
                         align_args(spatial_scale, ph, pw, sampling_ratio, aligned));
  }

  static at::Tensor ps_roi_align_backward(const at::Tensor& grad, const at::Tensor& rois,
                                          double spatial_scale, int64_t ph, int64_t pw,
                                          int64_t sampling_ratio, bool aligned, int64_t batch,
                                          int64_t channels, int64_t height, int64_t width) {
    return std::get<0>(Impl::backward(grad, std::nullopt, rois, std::nullopt,
                                      align_args(spatial_scale, ph, pw, sampling_ratio, aligned),
                                      batch, channels, height, width, false));
  }

  static at::Tensor deform_ps_roi_pool(const at::Tensor& input, const at::Tensor& rois,
                                       const std::optional<at::Tensor>& offset,
                                       double spatial_scale, int64_t ph, int64_t pw, int64_t gh,
                                       int64_t gw, int64_t part_h, int64_t part_w,
                                       int64_t sample_per_part, double trans_std) {
    return Impl::forward(input, rois, offset,
                         deform_args(spatial_scale, ph, pw, gh, gw, part_h, part_w,
                                     sample_per_part, trans_std));
  }

  static std::tuple<at::Tensor, at::Tensor> deform_ps_roi_pool_backward(
      const at::Tensor& grad, const at::Tensor& input, const at::Tensor& rois,
      const std::optional<at::Tensor>& offset, double spatial_scale, int64_t ph, int64_t pw,
      int64_t gh, int64_t gw, int64_t part_h, int64_t part_w, int64_t sample_per_part,
      double trans_std) {
    return Impl::backward(grad, input, rois, offset,
                          deform_args(spatial_scale, ph, pw, gh, gw, part_h, part_w,
                                      sample_per_part, trans_std),
                          input.size(0), input.size(1), input.size(2), input.size(3), true);
  }

  static void register_kernels(torch::Library& m) {
    m.impl("ps_roi_pool", TORCH_FN(ps_roi_pool));
    m.impl("_ps_roi_pool_backward", TORCH_FN(ps_roi_pool_backward));
    m.impl("ps_roi_align", TORCH_FN(ps_roi_align));
    m.impl("_ps_roi_align_backward", TORCH_FN(ps_roi_align_backward));
    m.impl("deform_ps_roi_pool", TORCH_FN(deform_ps_roi_pool));
    m.impl("_deform_ps_roi_pool_backward", TORCH_FN(deform_ps_roi_pool_backward));
  }
};

}  // namespace ps_roi
}  // namespace scalekit
