// Deformable convolution, host side on the classic ABI (the CUDA kernels): the
// loop over images and the GEMMs (at::bmm, one per image); the argument checks
// are deform_conv/checks.h. The CPU kernels, on the stable ABI, have the same
// loop in deform_conv/cpu/deform_conv_kernel.cpp (this copy goes when the CUDA
// kernels move to the stable ABI). Each device provides Kernels with
//   im2col(geometry, input_n, offset_n, mask_n, columns)
//   col2im(geometry, grad_columns, offset_n, mask_n, grad_input_n)
//   coord_grad(geometry, grad_columns, input_n, offset_n, mask_n, grad_offset_n, grad_mask_n)
// where *_n are one image's contiguous slices and columns are [C_in * taps, pixels].
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "deform_conv/checks.h"
#include "deform_conv/sample.h"

namespace scalekit {
namespace deform_conv {

template <typename Kernels>
struct Driver {
  static at::Tensor forward(const at::Tensor& input_, const at::Tensor& weight, const at::Tensor& offset_,
                            const std::optional<at::Tensor>& mask_, const std::optional<at::Tensor>& bias,
                            int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                            int64_t dil_w, int64_t groups, int64_t offset_groups) {
    const Geometry g = check_args(input_, weight, offset_, mask_, bias, stride_h, stride_w, pad_h, pad_w, dil_h,
                                  dil_w, groups, offset_groups);
    const at::Tensor input = input_.contiguous(), offset = offset_.contiguous();
    const at::Tensor mask = mask_.has_value() ? mask_->contiguous() : at::Tensor();
    const int64_t n_img = input.size(0), c_out = weight.size(0), rows = g.channels * g.taps();
    at::Tensor out = at::empty({n_img, c_out, g.out_h, g.out_w}, input.options());
    if (out.numel() == 0) return out;
    at::Tensor cols = at::empty({rows, g.pixels()}, input.options());
    const at::Tensor w = weight.contiguous().view({groups, c_out / groups, rows / groups});
    for (int64_t n = 0; n < n_img; ++n) {
      Kernels::im2col(g, input[n], offset[n], mask.defined() ? mask[n] : at::Tensor(), cols);
      at::Tensor out_n = out[n].view({groups, c_out / groups, g.pixels()});
      at::bmm_out(out_n, w, cols.view({groups, rows / groups, g.pixels()}));
    }
    if (bias.has_value()) out.add_(bias->view({1, c_out, 1, 1}));
    return out;
  }

  // Returns grad_input, grad_weight, grad_offset, grad_mask, grad_bias.
  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
      const at::Tensor& grad_, const at::Tensor& input_, const at::Tensor& weight, const at::Tensor& offset_,
      const std::optional<at::Tensor>& mask_, const std::optional<at::Tensor>& bias, int64_t stride_h,
      int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, int64_t groups,
      int64_t offset_groups) {
    const Geometry g = check_args(input_, weight, offset_, mask_, bias, stride_h, stride_w, pad_h, pad_w, dil_h,
                                  dil_w, groups, offset_groups);
    const at::Tensor input = input_.contiguous(), offset = offset_.contiguous(), grad = grad_.contiguous();
    const at::Tensor mask = mask_.has_value() ? mask_->contiguous() : at::Tensor();
    const int64_t n_img = input.size(0), c_out = weight.size(0), rows = g.channels * g.taps();
    SK_CHECK(has_shape(grad, {n_img, c_out, g.out_h, g.out_w}), "grad must have the output's shape, got ",
             shape(grad));
    at::Tensor grad_input = at::zeros_like(input);
    at::Tensor grad_offset = at::zeros_like(offset);
    at::Tensor grad_mask = mask.defined() ? at::zeros_like(mask) : at::Tensor();
    const at::Tensor w = weight.contiguous().view({groups, c_out / groups, rows / groups});
    at::Tensor grad_w = at::zeros({groups, c_out / groups, rows / groups}, weight.options());
    at::Tensor cols = at::empty({rows, g.pixels()}, input.options());
    at::Tensor grad_cols = at::empty({groups, rows / groups, g.pixels()}, input.options());
    for (int64_t n = 0; n < n_img && grad.numel() > 0; ++n) {
      const at::Tensor go = grad[n].view({groups, c_out / groups, g.pixels()});
      const at::Tensor mask_n = mask.defined() ? mask[n] : at::Tensor();
      at::bmm_out(grad_cols, w.transpose(1, 2), go);
      const at::Tensor gc = grad_cols.view({rows, g.pixels()});
      Kernels::col2im(g, gc, offset[n], mask_n, grad_input[n]);
      Kernels::coord_grad(g, gc, input[n], offset[n], mask_n, grad_offset[n],
                          mask.defined() ? grad_mask[n] : at::Tensor());
      Kernels::im2col(g, input[n], offset[n], mask_n, cols);
      grad_w.baddbmm_(go, cols.view({groups, rows / groups, g.pixels()}).transpose(1, 2));
    }
    at::Tensor grad_bias = bias.has_value() ? grad.sum({0, 2, 3}) : at::Tensor();
    return {grad_input, grad_w.view_as(weight), grad_offset, grad_mask, grad_bias};
  }
};

}  // namespace deform_conv
}  // namespace scalekit
