// Box overlap arithmetic shared by the CPU and CUDA NMS kernels, written once
// so that both round exactly alike (and exactly like torchvision's kernels).
#pragma once

#include <torch/headeronly/macros/Macros.h>

#include <cmath>
#include <limits>

namespace scalekit {
namespace nms_detail {

// A product the CUDA compiler may not fuse into a following add (FMA): the
// IoU's union `a + b - w * h` must round as two separate operations.
C10_HOST_DEVICE inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
C10_HOST_DEVICE inline double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

template <typename T>
C10_HOST_DEVICE inline T min_(T a, T b) {
  return a < b ? a : b;
}
template <typename T>
C10_HOST_DEVICE inline T max_(T a, T b) {
  return a < b ? b : a;
}

// Area with the pixel-offset convention: off = 0 (torchvision) or 1 (the
// "+1" of py-faster-rcnn, the original Soft-NMS and MXNet R-FCN). mul_rn: a
// kernel that computes the area inline in box_iou's union must not let nvcc fuse
// it into an FMA there (seen in soft_nms_kernel's PTX with --fmad=true).
template <typename T>
C10_HOST_DEVICE inline T box_area(T x1, T y1, T x2, T y2, T off) {
  return mul_rn(x2 - x1 + off, y2 - y1 + off);
}

// IoU of box a and box b given their precomputed areas. With off = 0 this is
// operation for operation torchvision's `inter / (area_a + area_b - inter)`.
template <typename T>
C10_HOST_DEVICE inline T box_iou(
    T ax1, T ay1, T ax2, T ay2, T aarea,
    T bx1, T by1, T bx2, T by2, T barea, T off) {
  T w = max_(T(0), min_(ax2, bx2) - max_(ax1, bx1) + off);
  T h = max_(T(0), min_(ay2, by2) - max_(ay1, by1) + off);
  T inter = mul_rn(w, h);
  return inter / (aarea + barea - inter);
}

enum class SoftNMSMethod : int { kHard, kLinear, kGaussian };

template <typename T>
C10_HOST_DEVICE inline T exp_(T x) {
#ifdef __CUDA_ARCH__
  return exp(x);
#else
  return std::exp(x);
#endif
}

// Soft-NMS: the factor for the score of a box whose IoU with the selected box
// is `iou`. 1 leaves the box as it is; for "hard" anything else removes it.
// Gaussian decays every box with positive overlap, linear and hard only boxes
// with IoU above the threshold (Bodla et al. 2017, eqs. 2-3).
template <typename T>
C10_HOST_DEVICE inline T soft_nms_weight(SoftNMSMethod method, T iou, T threshold, T sigma) {
  if (method == SoftNMSMethod::kGaussian) {
    return iou > T(0) ? exp_(-mul_rn(iou, iou) / sigma) : T(1);
  }
  if (!(iou > threshold)) return T(1);
  return method == SoftNMSMethod::kLinear ? T(1) - iou : T(0);
}

// The score of a box after a decay by `weight` in [0, 1]: the paper's
// `score * weight` for score >= 0. A negative score moves away from zero by
// the same fraction of its magnitude, `score * (2 - weight)`, so that a decay
// never raises a score (the paper's product would, and Soft-NMS would then
// return scores out of order); it stops at the lowest finite value.
template <typename T>
C10_HOST_DEVICE inline T soft_nms_decay(T score, T weight) {
  if (!(score < T(0))) return mul_rn(score, weight);
  const T decayed = mul_rn(score, T(2) - weight);
  const T lowest = -std::numeric_limits<T>::max();
  return decayed < lowest ? lowest : decayed;
}

// The threshold as the box precision sees it: for every value x of type T,
// `x > threshold_as<T>(t)` iff `double(x) > t`. (torchvision's CPU kernel
// compares a float IoU against a double threshold; a float compare against the
// largest float not above t gives the same answer at full SIMD width.)
template <typename T>
inline T threshold_as(double t) {
  T v = static_cast<T>(t);
  if (static_cast<double>(v) > t) {
    v = std::nextafter(v, -std::numeric_limits<T>::infinity());
  }
  return v;
}

}  // namespace nms_detail
}  // namespace scalekit
