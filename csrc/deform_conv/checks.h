// Deformable convolution's argument checks, shared by the CPU (stable ABI) and
// CUDA (classic ABI) kernels and written once for both tensor types
// (common/check.h). Returns the convolution's geometry.
#pragma once

#include <optional>
#include <utility>

#include "common/check.h"
#include "deform_conv/sample.h"

namespace scalekit {
namespace deform_conv {

template <typename Tensor>
Geometry check_args(const Tensor& input, const Tensor& weight, const Tensor& offset,
                    const std::optional<Tensor>& mask, const std::optional<Tensor>& bias,
                           int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                           int64_t dil_w, int64_t groups, int64_t offset_groups) {
  SK_CHECK(input.dim() == 4, "input must have shape [N, C_in, H, W], got ", shape(input));
  SK_CHECK(weight.dim() == 4, "weight must have shape [C_out, C_in / groups, kH, kW], got ",
                    shape(weight));
  SK_CHECK(offset.dim() == 4, "offset must have shape [N, 2 * offset_groups * kH * kW, H_out, W_out], got ",
                    shape(offset));
  SK_CHECK(is_floating(input.scalar_type()), "input must be floating point, got ", input.scalar_type());
  for (const auto& [t, name] : {std::pair{&weight, "weight"}, std::pair{&offset, "offset"}}) {
    SK_CHECK(t->scalar_type() == input.scalar_type(), name, " must have the dtype of input (",
                     input.scalar_type(), "), got ", t->scalar_type());
    SK_CHECK(t->device() == input.device(), name, " must be on the device of input");
  }
  SK_CHECK(stride_h > 0 && stride_w > 0, "stride must be positive, got (", stride_h, ", ", stride_w, ")");
  SK_CHECK(pad_h >= 0 && pad_w >= 0, "padding must be >= 0, got (", pad_h, ", ", pad_w, ")");
  SK_CHECK(dil_h > 0 && dil_w > 0, "dilation must be positive, got (", dil_h, ", ", dil_w, ")");
  // Far beyond any real convolution; small enough that no size below overflows int64
  // (scalekit/ops/_deform_conv.py checks the same bound).
  constexpr int64_t kMaxArgument = int64_t(1) << 16;
  SK_CHECK(stride_h <= kMaxArgument && stride_w <= kMaxArgument, "stride must be <= ", kMaxArgument,
                    ", got (", stride_h, ", ", stride_w, ")");
  SK_CHECK(pad_h <= kMaxArgument && pad_w <= kMaxArgument, "padding must be <= ", kMaxArgument,
                    ", got (", pad_h, ", ", pad_w, ")");
  SK_CHECK(dil_h <= kMaxArgument && dil_w <= kMaxArgument, "dilation must be <= ", kMaxArgument,
                    ", got (", dil_h, ", ", dil_w, ")");
  Geometry g;
  g.channels = input.size(1), g.height = input.size(2), g.width = input.size(3);
  g.kernel_h = weight.size(2), g.kernel_w = weight.size(3);
  g.stride_h = stride_h, g.stride_w = stride_w, g.pad_h = pad_h, g.pad_w = pad_w;
  g.dil_h = dil_h, g.dil_w = dil_w, g.groups = groups, g.offset_groups = offset_groups;
  g.out_h = (g.height + 2 * pad_h - dil_h * (g.kernel_h - 1) - 1) / stride_h + 1;
  g.out_w = (g.width + 2 * pad_w - dil_w * (g.kernel_w - 1) - 1) / stride_w + 1;
  SK_CHECK(g.kernel_h > 0 && g.kernel_w > 0, "weight must have a non-empty kernel, got ", shape(weight));
  SK_CHECK(g.out_h > 0 && g.out_w > 0, "the output would be empty: input ", g.height, "x", g.width,
                    ", kernel ", g.kernel_h, "x", g.kernel_w, ", padding (", pad_h, ", ", pad_w, "), dilation (",
                    dil_h, ", ", dil_w, ")");
  SK_CHECK(groups > 0 && g.channels % groups == 0 && weight.size(0) % groups == 0 &&
                        weight.size(1) * groups == g.channels,
                    "weight [C_out, C_in / groups, kH, kW] = ", shape(weight), " does not fit input channels ",
                    g.channels, " with groups = ", groups);
  SK_CHECK(offset_groups > 0 && g.channels % offset_groups == 0,
                    "offset channels ", offset.size(1), " give offset_groups = ", offset_groups,
                    ", which must divide the input channels ", g.channels);
  SK_CHECK(offset.size(0) == input.size(0) && offset.size(1) == 2 * offset_groups * g.taps() &&
                        offset.size(2) == g.out_h && offset.size(3) == g.out_w,
                    "offset must have shape [N, 2 * offset_groups * kH * kW, H_out, W_out] = [", input.size(0),
                    ", ", 2 * offset_groups * g.taps(), ", ", g.out_h, ", ", g.out_w, "], got ", shape(offset));
  g.use_mask = mask.has_value();
  if (g.use_mask) {
    SK_CHECK(has_shape(*mask, {input.size(0), offset_groups * g.taps(), g.out_h, g.out_w}),
                      "mask must have shape [N, offset_groups * kH * kW, H_out, W_out] = [", input.size(0), ", ",
                      offset_groups * g.taps(), ", ", g.out_h, ", ", g.out_w, "], got ", shape(*mask));
    SK_CHECK(mask->scalar_type() == input.scalar_type(), "mask must have the dtype of input");
    SK_CHECK(mask->device() == input.device(), "mask must be on the device of input");
  }
  if (bias.has_value()) {
    SK_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), "bias must have shape [C_out] = [",
                      weight.size(0), "], got ", shape(*bias));
    SK_CHECK(bias->scalar_type() == input.scalar_type(), "bias must have the dtype of input");
    SK_CHECK(bias->device() == input.device(), "bias must be on the device of input");
  }
  return g;
}

}  // namespace deform_conv
}  // namespace scalekit
