// SNIPER's greedy chip cover (thesis §3.3.1) for one image, all levels in one call.
//
// At level l the image's boxes are scaled by factors[l]; candidate windows are
// `chip` x `chip` squares starting at (xs[i], ys[j]) for the level's slice of
// xs and ys. Box b fits window (i, j) iff it fits along x in column i and
// along y in row j, so each box covers a "rectangle" of columns x rows. The
// count of still-uncovered needed boxes in every window is kept in one
// [X, Y] table, updated incrementally: a box adds 1 to each window of its
// rectangle when it starts to count and subtracts 1 when a pick covers it.
// A pick is the first window (i-major, in the given order of xs and ys) with
// the largest count; the caller permutes xs / ys to break ties at random.
// A level stops when no needed box is left or the best count is below
// min_count[l]. Work: O(N * windows per box + picks * X * Y) per level,
// against O(picks * N * X * Y) for a dense recount (SNIPER's original code
// also materialises an [windows, N] overlap table and std::set differences).
//
// Containment is tested in double exactly as the Python reference does:
// xs[i] <= x1 * f && x2 * f <= xs[i] + chip (no fused multiply-add, see setup.py).
#include <cstdint>
#include <vector>

#include "common/stable.h"

namespace scalekit {
namespace {

void check_cover_args(
    const Tensor& boxes, const Tensor& need, const Tensor& factors,
    const Tensor& xs, const Tensor& ys, const Tensor& x_offsets,
    const Tensor& y_offsets, double chip, const std::vector<int64_t>& min_count) {
  SK_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "boxes must have shape [N, 4], got ",
                    shape(boxes));
  const int64_t levels = factors.numel();
  SK_CHECK(factors.dim() == 1, "factors must have shape [L], got ", shape(factors));
  SK_CHECK(need.dim() == 2 && need.size(0) == levels && need.size(1) == boxes.size(0),
                    "need must have shape [L, N] = [", levels, ", ", boxes.size(0), "], got ",
                    shape(need));
  SK_CHECK(x_offsets.dim() == 1 && x_offsets.numel() == levels + 1 &&
                        y_offsets.dim() == 1 && y_offsets.numel() == levels + 1,
                    "x_offsets and y_offsets must have shape [L + 1] = [", levels + 1, "], got ",
                    shape(x_offsets), " and ", shape(y_offsets));
  SK_CHECK(static_cast<int64_t>(min_count.size()) == levels,
                    "min_count needs one value per level (", levels, "), got ", min_count.size());
  SK_CHECK(xs.dim() == 1 && ys.dim() == 1, "xs and ys must be 1-D");
  for (const auto* t : {&boxes, &factors, &xs, &ys}) {
    SK_CHECK(t->scalar_type() == ScalarType::Double, "boxes, factors, xs and ys must be float64");
    SK_CHECK(t->device().is_cpu(), "chip_cover runs on the CPU");
  }
  SK_CHECK(need.scalar_type() == ScalarType::Bool, "need must be bool, got ", need.scalar_type());
  SK_CHECK(x_offsets.scalar_type() == ScalarType::Long && y_offsets.scalar_type() == ScalarType::Long,
                   "x_offsets and y_offsets must be int64");
  SK_CHECK(chip > 0, "chip must be > 0, got ", chip);
  const Tensor xo_t = as_contiguous(x_offsets), yo_t = as_contiguous(y_offsets);
  const int64_t* xo = xo_t.const_data_ptr<int64_t>();
  const int64_t* yo = yo_t.const_data_ptr<int64_t>();
  SK_CHECK(xo[0] == 0 && xo[levels] == xs.numel() && yo[0] == 0 && yo[levels] == ys.numel(),
                    "offsets must run from 0 to len(xs) and len(ys)");
  for (int64_t l = 0; l < levels; ++l) {
    SK_CHECK(xo[l] < xo[l + 1] && yo[l] < yo[l + 1],
                      "every level needs at least one window position; level ", l, " has none");
  }
}

// Indices k in [lo, hi) with xs[k] <= a && b <= xs[k] + chip.
void fitting(const double* xs, int64_t lo, int64_t hi, double a, double b, double chip,
             std::vector<int32_t>& out) {
  out.clear();
  for (int64_t k = lo; k < hi; ++k) {
    if (xs[k] <= a && b <= xs[k] + chip) out.push_back(static_cast<int32_t>(k - lo));
  }
}

std::tuple<Tensor, Tensor, Tensor> chip_cover_cpu(
    const Tensor& boxes_, const Tensor& need_, const Tensor& factors_,
    const Tensor& xs_, const Tensor& ys_, const Tensor& x_offsets_,
    const Tensor& y_offsets_, double chip, const std::vector<int64_t>& min_count) {
  check_cover_args(boxes_, need_, factors_, xs_, ys_, x_offsets_, y_offsets_, chip, min_count);
  const Tensor boxes = as_contiguous(boxes_), need_t = as_contiguous(need_);
  const Tensor factors = as_contiguous(factors_), xs_t = as_contiguous(xs_), ys_t = as_contiguous(ys_);
  const Tensor xo_t = as_contiguous(x_offsets_), yo_t = as_contiguous(y_offsets_);
  const int64_t n = boxes.size(0), levels = factors.numel();
  const double* b = boxes.const_data_ptr<double>();
  const bool* need = need_t.const_data_ptr<bool>();
  const double* f = factors.const_data_ptr<double>();
  const double* xs = xs_t.const_data_ptr<double>();
  const double* ys = ys_t.const_data_ptr<double>();
  const int64_t* xo = xo_t.const_data_ptr<int64_t>();
  const int64_t* yo = yo_t.const_data_ptr<int64_t>();

  Tensor coverable = new_zeros({levels, n}, ScalarType::Bool);
  bool* cov = coverable.mutable_data_ptr<bool>();
  std::vector<int64_t> picks;     // (level, global i, global j) triples
  std::vector<uint8_t> members;   // one row of n per pick
  std::vector<int32_t> counts, in_x, in_y;
  std::vector<std::vector<int32_t>> cols(n), rows(n);
  std::vector<uint8_t> left(n);
  std::vector<double> s(4 * n);

  for (int64_t l = 0; l < levels; ++l) {
    const int64_t x0 = xo[l], nx = xo[l + 1] - xo[l], y0 = yo[l], ny = yo[l + 1] - yo[l];
    counts.assign(static_cast<size_t>(nx * ny), 0);
    int64_t remaining = 0;
    for (int64_t k = 0; k < n; ++k) {
      for (int c = 0; c < 4; ++c) s[4 * k + c] = b[4 * k + c] * f[l];
      fitting(xs, x0, x0 + nx, s[4 * k], s[4 * k + 2], chip, cols[k]);
      fitting(ys, y0, y0 + ny, s[4 * k + 1], s[4 * k + 3], chip, rows[k]);
      const bool ok = !cols[k].empty() && !rows[k].empty();
      cov[l * n + k] = ok;
      left[k] = ok && need[l * n + k];
      if (!left[k]) continue;
      ++remaining;
      for (int32_t i : cols[k])
        for (int32_t j : rows[k]) ++counts[i * ny + j];
    }
    while (remaining > 0) {
      int64_t best = 0;
      for (int64_t w = 1; w < nx * ny; ++w)
        if (counts[w] > counts[best]) best = w;
      if (counts[best] < 1 || counts[best] < min_count[l]) break;
      const int64_t i = best / ny, j = best % ny;
      const double wx = xs[x0 + i], wy = ys[y0 + j];
      picks.insert(picks.end(), {l, x0 + i, y0 + j});
      const size_t row = members.size();
      members.resize(row + n, 0);
      for (int64_t k = 0; k < n; ++k) {
        const double* q = &s[4 * k];
        const bool inside = wx <= q[0] && q[2] <= wx + chip && wy <= q[1] && q[3] <= wy + chip;
        members[row + k] = inside;
        if (!(inside && left[k])) continue;
        left[k] = 0;
        --remaining;
        for (int32_t a : cols[k])
          for (int32_t c : rows[k]) --counts[a * ny + c];
      }
    }
  }
  const int64_t p = static_cast<int64_t>(picks.size() / 3);
  const Tensor picks_t = from_vector(picks, ScalarType::Long, {p, 3});
  const Tensor members_t = from_vector(members, ScalarType::Bool, {p, n});
  return {picks_t, members_t, coverable};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(scalekit, CPU, m) {
  m.impl("chip_cover", TORCH_BOX(&chip_cover_cpu));
}

}  // namespace scalekit
