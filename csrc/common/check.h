// Argument checks that read the same with both tensor APIs: the stable ABI's
// torch::stable::Tensor (the CPU kernels, scalekit._C_stable) and ATen's
// at::Tensor (the CUDA kernels, scalekit._C_cuda). A failed check throws
// std::invalid_argument, which reaches Python as ValueError from either
// library (the stable ABI carries no c10::TypeError, so a wrong dtype given to
// a direct torch.ops.scalekit call is a ValueError too; the Python API checks
// first and raises TypeError for it).
#pragma once

#include <torch/headeronly/core/ScalarType.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace scalekit {

// Messages are put together without iostreams, on purpose: built by the GPU machines' default
// compiler (/opt/gcc/bin/g++, which linked a copy of libstdc++ into the extension), writing a
// number to a std::ostringstream crashed the process (SIGSEGV in that copy's
// ostream::_M_insert<long>, by cuda-gdb) instead of raising the error. Numbers read as an
// ostream writes them (integers in full, floating point as "%g"), except that a floating
// point number gets the digits it needs to read back as itself; nor does the C++ global
// locale change them.
namespace check_detail {
inline void append(std::string& s, const char* v) { s += v; }
inline void append(std::string& s, const std::string& v) { s += v; }
inline void append(std::string& s, char v) { s += v; }
inline void append(std::string& s, bool v) { s += v ? '1' : '0'; }
inline void append(std::string& s, c10::ScalarType v) { s += c10::toString(v); }
template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
void append(std::string& s, T v) {
  s += std::to_string(v);
}
// As "%g" (six significant digits) where that reads back as the same value, else with as
// many digits as it takes: a batch index of 0.9999999999 is not printed as "1" in a message
// saying it must be an integer.
template <typename T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
void append(std::string& s, T v) {
  char buf[40];
  for (int digits = 6; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(v));
    if (!(v == v) || static_cast<T>(std::strtod(buf, nullptr)) == v) break;
  }
  s += buf;
}
}  // namespace check_detail

template <typename... A>
std::string str_cat(const A&... parts) {
  std::string s;
  (check_detail::append(s, parts), ...);
  return s;
}

// "[3, 4]": a tensor's shape, as the Python API prints it.
template <typename T>
std::string shape(const T& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

// Whether t has exactly the shape `sizes`.
template <typename T>
bool has_shape(const T& t, std::initializer_list<int64_t> sizes) {
  if (t.dim() != static_cast<int64_t>(sizes.size())) return false;
  int64_t d = 0;
  for (const int64_t s : sizes)
    if (t.size(d++) != s) return false;
  return true;
}

// "cpu", "cuda:0": a device as torch prints it.
template <typename D>
std::string device_name(const D& d) {
  if (d.is_cpu()) return "cpu";
  if (d.is_cuda()) return "cuda:" + std::to_string(static_cast<int>(d.index()));
  return "device type " + std::to_string(static_cast<int>(d.type()));
}

inline bool is_floating(c10::ScalarType t) {
  return t == c10::ScalarType::Float || t == c10::ScalarType::Double || t == c10::ScalarType::Half ||
      t == c10::ScalarType::BFloat16;
}

}  // namespace scalekit

// SK_CHECK(condition, message parts...): std::invalid_argument (ValueError) when false.
#define SK_CHECK(cond, ...)                                              \
  do {                                                                   \
    if (!(cond)) throw std::invalid_argument(::scalekit::str_cat(__VA_ARGS__)); \
  } while (0)
