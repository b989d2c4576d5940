// Deformable convolution, device-agnostic host side: argument checks, the
// loop over images and the GEMMs (at::bmm, one per image). Each device
// provides Kernels with
//   im2col(geometry, input_n, offset_n, mask_n, columns)
//   col2im(geometry, grad_columns, offset_n, mask_n, grad_input_n)
//   coord_grad(geometry, grad_columns, input_n, offset_n, mask_n, grad_offset_n, grad_mask_n)
// where *_n are one image's contiguous slices and columns are [C_in * taps, pixels].
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "deform_conv/sample.h"

namespace scalekit {
namespace deform_conv {

inline Geometry check_args(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                           const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias,
                           int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                           int64_t dil_w, int64_t groups, int64_t offset_groups) {
  TORCH_CHECK_VALUE(input.dim() == 4, "input must have shape [N, C_in, H, W], got ", input.sizes());
  TORCH_CHECK_VALUE(weight.dim() == 4, "weight must have shape [C_out, C_in / groups, kH, kW], got ",
                    weight.sizes());
  TORCH_CHECK_VALUE(offset.dim() == 4, "offset must have shape [N, 2 * offset_groups * kH * kW, H_out, W_out], got ",
                    offset.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(input.scalar_type()), "input must be floating point, got ", input.scalar_type());
  for (const auto& [t, name] : {std::pair{&weight, "weight"}, std::pair{&offset, "offset"}}) {
    TORCH_CHECK_TYPE(t->scalar_type() == input.scalar_type(), name, " must have the dtype of input (",
                     input.scalar_type(), "), got ", t->scalar_type());
    TORCH_CHECK_VALUE(t->device() == input.device(), name, " must be on the device of input");
  }
  TORCH_CHECK_VALUE(stride_h > 0 && stride_w > 0, "stride must be positive, got (", stride_h, ", ", stride_w, ")");
  TORCH_CHECK_VALUE(pad_h >= 0 && pad_w >= 0, "padding must be >= 0, got (", pad_h, ", ", pad_w, ")");
  TORCH_CHECK_VALUE(dil_h > 0 && dil_w > 0, "dilation must be positive, got (", dil_h, ", ", dil_w, ")");
  // Far beyond any real convolution; small enough that no size below overflows int64
  // (scalekit/ops/_deform_conv.py checks the same bound).
  constexpr int64_t kMaxArgument = int64_t(1) << 16;
  TORCH_CHECK_VALUE(stride_h <= kMaxArgument && stride_w <= kMaxArgument, "stride must be <= ", kMaxArgument,
                    ", got (", stride_h, ", ", stride_w, ")");
  TORCH_CHECK_VALUE(pad_h <= kMaxArgument && pad_w <= kMaxArgument, "padding must be <= ", kMaxArgument,
                    ", got (", pad_h, ", ", pad_w, ")");
  TORCH_CHECK_VALUE(dil_h <= kMaxArgument && dil_w <= kMaxArgument, "dilation must be <= ", kMaxArgument,
                    ", got (", dil_h, ", ", dil_w, ")");
  Geometry g;
  g.channels = input.size(1), g.height = input.size(2), g.width = input.size(3);
  g.kernel_h = weight.size(2), g.kernel_w = weight.size(3);
  g.stride_h = stride_h, g.stride_w = stride_w, g.pad_h = pad_h, g.pad_w = pad_w;
  g.dil_h = dil_h, g.dil_w = dil_w, g.groups = groups, g.offset_groups = offset_groups;
  g.out_h = (g.height + 2 * pad_h - dil_h * (g.kernel_h - 1) - 1) / stride_h + 1;
  g.out_w = (g.width + 2 * pad_w - dil_w * (g.kernel_w - 1) - 1) / stride_w + 1;
  TORCH_CHECK_VALUE(g.kernel_h > 0 && g.kernel_w > 0, "weight must have a non-empty kernel, got ", weight.sizes());
  TORCH_CHECK_VALUE(g.out_h > 0 && g.out_w > 0, "the output would be empty: input ", g.height, "x", g.width,
                    ", kernel ", g.kernel_h, "x", g.kernel_w, ", padding (", pad_h, ", ", pad_w, "), dilation (",
                    dil_h, ", ", dil_w, ")");
  TORCH_CHECK_VALUE(groups > 0 && g.channels % groups == 0 && weight.size(0) % groups == 0 &&
                        weight.size(1) * groups == g.channels,
                    "weight [C_out, C_in / groups, kH, kW] = ", weight.sizes(), " does not fit input channels ",
                    g.channels, " with groups = ", groups);
  TORCH_CHECK_VALUE(offset_groups > 0 && g.channels % offset_groups == 0,
                    "offset channels ", offset.size(1), " give offset_groups = ", offset_groups,
                    ", which must divide the input channels ", g.channels);
  TORCH_CHECK_VALUE(offset.size(0) == input.size(0) && offset.size(1) == 2 * offset_groups * g.taps() &&
                        offset.size(2) == g.out_h && offset.size(3) == g.out_w,
                    "offset must have shape [N, 2 * offset_groups * kH * kW, H_out, W_out] = [", input.size(0),
                    ", ", 2 * offset_groups * g.taps(), ", ", g.out_h, ", ", g.out_w, "], got ", offset.sizes());
  g.use_mask = mask.has_value();
  if (g.use_mask) {
    TORCH_CHECK_VALUE(mask->sizes() == at::IntArrayRef({input.size(0), offset_groups * g.taps(), g.out_h, g.out_w}),
                      "mask must have shape [N, offset_groups * kH * kW, H_out, W_out] = [", input.size(0), ", ",
                      offset_groups * g.taps(), ", ", g.out_h, ", ", g.out_w, "], got ", mask->sizes());
    TORCH_CHECK_TYPE(mask->scalar_type() == input.scalar_type(), "mask must have the dtype of input");
    TORCH_CHECK_VALUE(mask->device() == input.device(), "mask must be on the device of input");
  }
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(0), "bias must have shape [C_out] = [",
                      weight.size(0), "], got ", bias->sizes());
    TORCH_CHECK_TYPE(bias->scalar_type() == input.scalar_type(), "bias must have the dtype of input");
    TORCH_CHECK_VALUE(bias->device() == input.device(), "bias must be on the device of input");
  }
  return g;
}

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
    TORCH_CHECK_VALUE(grad.sizes() == at::IntArrayRef({n_img, c_out, g.out_h, g.out_w}),
                      "grad must have the output's shape, got ", grad.sizes());
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
