// Boxes sorted by (category, x1), for NMS kernels that visit only the boxes a
// given box can overlap. Exact: a box left outside a window has zero overlap
// width, computed with the very roundings that box_iou uses.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "nms/iou.h"

namespace scalekit {
namespace nms_detail {

template <typename acc_t>
struct SpatialIndex {
  // Arrays indexed by position in (category, x1, index) order.
  std::vector<acc_t> x1, y1, x2, y2, area;
  std::vector<acc_t> x2max;        // running max of x2 within the category
  std::vector<int64_t> index;      // original index of the box at a position
  std::vector<int64_t> position;   // position of the box with a given index
  std::vector<int64_t> seg_begin;  // first position of the box's category
  std::vector<int64_t> seg_end;    // one past its last position
  acc_t off;

  // Positions [lo, hi) of every box of p's category that can have a positive
  // overlap width with the box at p (p itself included).
  std::pair<int64_t, int64_t> window(int64_t p) const {
    const acc_t px1 = x1[p], px2 = x2[p];
    // Right of p: x1 >= px1, so the overlap width is at most px2 - x1 + off,
    // which decreases along the order.
    const auto right = std::partition_point(
        x1.begin() + p + 1, x1.begin() + seg_end[p],
        [&](acc_t jx1) { return px2 - jx1 + off > acc_t(0); });
    // Left of p: x1 <= px1, so the width is at most x2max - px1 + off, which
    // increases along the order.
    const auto left = std::partition_point(
        x2max.begin() + seg_begin[p], x2max.begin() + p,
        [&](acc_t jx2max) { return !(jx2max - px1 + off > acc_t(0)); });
    return {left - x2max.begin(), right - x1.begin()};
  }

  std::pair<int64_t, int64_t> segment(int64_t p) const {
    return {seg_begin[p], seg_end[p]};
  }
};

// `b` [n, 4] contiguous boxes, finite; `idxs` nullptr or [n] categories.
template <typename scalar_t, typename acc_t>
SpatialIndex<acc_t> build_spatial_index(
    const scalar_t* b, int64_t n, const int64_t* idxs, acc_t off) {
  SpatialIndex<acc_t> s;
  s.off = off;
  s.index.resize(n);
  std::iota(s.index.begin(), s.index.end(), int64_t(0));
  std::sort(s.index.begin(), s.index.end(), [&](int64_t i, int64_t j) {
    if (idxs != nullptr && idxs[i] != idxs[j]) return idxs[i] < idxs[j];
    const acc_t xi = static_cast<acc_t>(b[4 * i]), xj = static_cast<acc_t>(b[4 * j]);
    if (xi != xj) return xi < xj;
    return i < j;
  });
  s.x1.resize(n), s.y1.resize(n), s.x2.resize(n), s.y2.resize(n), s.area.resize(n);
  s.x2max.resize(n), s.position.resize(n), s.seg_begin.resize(n), s.seg_end.resize(n);
  int64_t begin = 0;
  for (int64_t p = 0; p < n; ++p) {
    const int64_t i = s.index[p];
    s.position[i] = p;
    s.x1[p] = static_cast<acc_t>(b[4 * i + 0]);
    s.y1[p] = static_cast<acc_t>(b[4 * i + 1]);
    s.x2[p] = static_cast<acc_t>(b[4 * i + 2]);
    s.y2[p] = static_cast<acc_t>(b[4 * i + 3]);
    s.area[p] = box_area(s.x1[p], s.y1[p], s.x2[p], s.y2[p], off);
    const bool new_segment = p == 0 || (idxs != nullptr && idxs[i] != idxs[s.index[p - 1]]);
    if (new_segment) {
      for (int64_t q = begin; q < p; ++q) s.seg_end[q] = p;
      begin = p;
    }
    s.seg_begin[p] = begin;
    s.x2max[p] = new_segment ? s.x2[p] : std::max(s.x2max[p - 1], s.x2[p]);
  }
  for (int64_t q = begin; q < n; ++q) s.seg_end[q] = n;
  return s;
}

}  // namespace nms_detail
}  // namespace scalekit
