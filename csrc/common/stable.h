// The stable-ABI side of scalekit's CPU kernels (scalekit._C_stable): the few
// tensor operations they need, on torch/csrc/stable only, so that the library
// built once against one torch loads on every later release (see setup.py for
// the target version).
//
// The stable surface has no bmm of its own: it is called through the dispatcher
// by name (torch_call_dispatcher, part of the stable C shim). NMS sorts in C++.
#pragma once

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "common/check.h"

namespace scalekit {

using Tensor = torch::stable::Tensor;
using ScalarType = c10::ScalarType;
using torch::stable::Device;

// Torch 2.10-2.11's headers name the error check TORCH_ERROR_CODE_CHECK; later ones,
// STABLE_TORCH_ERROR_CODE_CHECK.
#ifndef STABLE_TORCH_ERROR_CODE_CHECK
#define STABLE_TORCH_ERROR_CODE_CHECK TORCH_ERROR_CODE_CHECK
#endif

// An ATen op with one tensor output, by schema name, arguments boxed as the stable ABI
// boxes them. The call consumes the boxed arguments and hands back a new reference to the
// output, which the returned Tensor owns (dropping it unwrapped would leak that tensor).
template <typename... A>
Tensor call_op(const char* name, const char* overload, const A&... args) {
  std::array<StableIValue, std::max<size_t>(sizeof...(A), 1)> stack{torch::stable::detail::from(args)...};
  STABLE_TORCH_ERROR_CODE_CHECK(torch_call_dispatcher(name, overload, stack.data(), TORCH_ABI_VERSION));
  return torch::stable::detail::to<Tensor>(stack[0]);
}

inline Device cpu() { return Device(c10::DeviceType::CPU); }

// torch::stable::index_select and permute run on torch >= 2.10, but torch 2.11's headers do
// not declare them (2.14's do). These are the same boxed calls, so that scalekit also builds
// against the older headers (the GPU machines this project is lent run torch 2.11). Their own
// names: with 2.14's headers an unqualified index_select(...) would find both by ADL.
inline Tensor select_by_index(const Tensor& self, int64_t dim, const Tensor& index) {
  return call_op("aten::index_select", "", self, dim, index);
}

inline Tensor permuted(const Tensor& self, const std::vector<int64_t>& dims) {
  return call_op("aten::permute", "", self, dims);
}

// t itself when it is contiguous already: one boxed dispatcher call fewer, which shows on
// small inputs (a stable-ABI call goes through the boxed dispatcher).
inline Tensor as_contiguous(const Tensor& t) { return t.is_contiguous() ? t : torch::stable::contiguous(t); }

inline Tensor new_empty(const std::vector<int64_t>& sizes, ScalarType dtype, Device device = cpu()) {
  return torch::stable::empty(sizes, dtype, std::nullopt, device);
}

inline Tensor new_zeros(const std::vector<int64_t>& sizes, ScalarType dtype, Device device = cpu()) {
  Tensor t = new_empty(sizes, dtype, device);
  torch::stable::zero_(t);
  return t;
}

inline Tensor zeros_as(const Tensor& t) {
  return new_zeros(std::vector<int64_t>(t.sizes().begin(), t.sizes().end()), t.scalar_type(), t.device());
}

inline Tensor to_dtype(const Tensor& t, ScalarType dtype) {
  return t.scalar_type() == dtype ? t : torch::stable::to(t, dtype);
}

// A CPU tensor holding a copy of `values`.
template <typename T>
Tensor from_vector(const std::vector<T>& values, ScalarType dtype, std::vector<int64_t> sizes = {}) {
  if (sizes.empty()) sizes = {static_cast<int64_t>(values.size())};
  Tensor t = new_empty(sizes, dtype);
  if (!values.empty()) std::memcpy(t.mutable_data_ptr(), values.data(), values.size() * sizeof(T));
  return t;
}

// Indices of n values in decreasing order, ties by increasing index (NaN-free values):
// torch.sort(values, stable=True, descending=True)'s order, without a dispatcher call.
template <typename T>
std::vector<int64_t> argsort_descending(const T* values, int64_t n) {
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return values[a] > values[b]; });
  return order;
}

template <typename T>
struct Tag {
  using type = T;
};

// Calls f(Tag<scalar_t>{}) for the floating dtypes the kernels accept.
template <typename F>
void dispatch_floating(ScalarType dtype, const char* argument, F&& f) {
  switch (dtype) {
    case ScalarType::Float: return f(Tag<float>{});
    case ScalarType::Double: return f(Tag<double>{});
    case ScalarType::Half: return f(Tag<c10::Half>{});
    case ScalarType::BFloat16: return f(Tag<c10::BFloat16>{});
    default: SK_CHECK(false, argument, " must be float16, bfloat16, float32 or float64, got ", dtype);
  }
}

// Calls f(Tag<scalar_t>{}) for float32 and float64 (kernels that upcast 16-bit types first).
template <typename F>
void dispatch_float_double(ScalarType dtype, F&& f) {
  switch (dtype) {
    case ScalarType::Float: return f(Tag<float>{});
    case ScalarType::Double: return f(Tag<double>{});
    default: SK_CHECK(false, "expected float32 or float64, got ", dtype);
  }
}

// The type arithmetic runs in: float for the 16-bit types (as ATen's opmath_type).
template <typename T>
struct AccType {
  using type = T;
};
template <>
struct AccType<c10::Half> {
  using type = float;
};
template <>
struct AccType<c10::BFloat16> {
  using type = float;
};
template <typename T>
using acc_type = typename AccType<T>::type;

template <typename T>
constexpr ScalarType scalar_type_of();
template <>
constexpr ScalarType scalar_type_of<float>() { return ScalarType::Float; }
template <>
constexpr ScalarType scalar_type_of<double>() { return ScalarType::Double; }

}  // namespace scalekit
