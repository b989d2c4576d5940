// Non-maximum merging on the CPU: SAHI's greedy NMM and (transitive) NMM.
//
// Boxes are visited in SAHI's order (merge.h). A visiting box looks for the
// boxes it takes only among the still unassigned boxes of its category whose
// x-extent can overlap its own: an index sorted by (category, x1) answers that
// with two binary searches, as NMS's spatial index does, and is compacted
// whenever half of its boxes have been assigned, so that later windows shrink
// with the work left. A group's candidates are then re-checked in SAHI's order
// against the merged box as it grows (a candidate that no longer matches it is
// dropped). Work O(N log N + the unassigned boxes the windows hold), memory O(N).
#include <algorithm>
#include <numeric>
#include <tuple>
#include <vector>

#include "common/interrupt.h"
#include "common/stable.h"
#include "nms/cpu/finite.h"
#include "merge/merge.h"

namespace scalekit {
namespace {

using namespace merge_detail;

constexpr int64_t kParallelGrain = 16384;
constexpr int64_t kMinCompact = 1024;

template <typename acc_t>
struct Boxes {  // by original index
  std::vector<acc_t> x1, y1, x2, y2, area, score;
  std::vector<int64_t> cat;
};

// The unassigned boxes, sorted by (category, x1, index).
template <typename acc_t>
class ActiveIndex {
 public:
  ActiveIndex(const Boxes<acc_t>& b, int64_t n) : b_(b), position_(n, -1) {
    struct Key {
      int64_t cat;
      acc_t x1;
      int64_t i;
    };
    std::vector<Key> keys(n);
    for (int64_t i = 0; i < n; ++i) keys[i] = {b.cat[i], b.x1[i], i};
    std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& c) {
      if (a.cat != c.cat) return a.cat < c.cat;
      if (a.x1 != c.x1) return a.x1 < c.x1;
      return a.i < c.i;
    });
    std::vector<int64_t> all(n);
    for (int64_t p = 0; p < n; ++p) all[p] = keys[p].i;
    rebuild(all);
  }

  int64_t size() const { return static_cast<int64_t>(index_.size()); }

  void remove(int64_t i) {
    const int64_t p = position_[i];
    if (p >= 0 && alive_[p]) {
      alive_[p] = 0;
      --alive_count_;
    }
  }

  // Positions [lo, hi) of the boxes of category `cat` whose x-extent can give
  // a positive overlap width with [px1, px2]; with prune = false, the category.
  std::pair<int64_t, int64_t> window(int64_t cat, acc_t px1, acc_t px2, bool prune) const {
    const auto c = std::lower_bound(cats_.begin(), cats_.end(), cat);
    if (c == cats_.end() || *c != cat) return {0, 0};
    int64_t lo = cat_begin_[c - cats_.begin()], hi = cat_begin_[c - cats_.begin() + 1];
    if (!prune) return {lo, hi};
    // The width is at most px2 - x1, which falls along the order, and at most
    // x2max - px1, which rises along it.
    hi = std::partition_point(x1_.begin() + lo, x1_.begin() + hi,
                              [&](acc_t x) { return px2 - x > acc_t(0); }) - x1_.begin();
    lo = std::partition_point(x2max_.begin() + lo, x2max_.begin() + hi,
                              [&](acc_t x) { return !(x - px1 > acc_t(0)); }) - x2max_.begin();
    return {lo, std::max(lo, hi)};
  }

  // match[p - lo] = 1 for the unassigned boxes p in [lo, hi) that match the
  // box (x1, y1, x2, y2, area) at `threshold`.
  void match(MatchMetric metric, acc_t x1, acc_t y1, acc_t x2, acc_t y2, acc_t area,
             acc_t threshold, int64_t lo, int64_t hi, uint8_t* __restrict out) const {
    const acc_t* __restrict bx1 = x1_.data();
    const acc_t* __restrict by1 = y1_.data();
    const acc_t* __restrict bx2 = x2_.data();
    const acc_t* __restrict by2 = y2_.data();
    const acc_t* __restrict barea = area_.data();
    const uint8_t* __restrict alive = alive_.data();
    auto run = [&](int64_t b, int64_t e) {
      // One loop per metric, so that the metric is no branch inside it.
      auto loop = [&](MatchMetric m) {
        for (int64_t p = b; p < e; ++p) {
          const acc_t v = match_value(m, x1, y1, x2, y2, area, bx1[p], by1[p], bx2[p], by2[p], barea[p]);
          out[p - lo] = static_cast<uint8_t>((v >= threshold) & (alive[p] != 0));
        }
      };
      if (metric == MatchMetric::kIoU) {
        loop(MatchMetric::kIoU);
      } else {
        loop(MatchMetric::kIoS);
      }
    };
    if (hi - lo < 2 * kParallelGrain) {
      run(lo, hi);
    } else {
      torch::stable::parallel_for(lo, hi, kParallelGrain, run);
    }
  }

  int64_t index_at(int64_t p) const { return index_[p]; }
  int64_t alive_count() const { return alive_count_; }

  // Drops the assigned boxes once they are half of the index.
  void maybe_compact() {
    if (size() < kMinCompact || 2 * alive_count_ > size()) return;
    std::vector<int64_t> kept;
    kept.reserve(alive_count_);
    for (int64_t p = 0; p < size(); ++p) {
      if (alive_[p]) {
        kept.push_back(index_[p]);
      } else {
        position_[index_[p]] = -1;
      }
    }
    rebuild(kept);
  }

 private:
  void rebuild(const std::vector<int64_t>& sorted) {
    const int64_t m = static_cast<int64_t>(sorted.size());
    index_ = sorted;
    cats_.clear(), cat_begin_.clear();
    cat_.resize(m), x1_.resize(m), y1_.resize(m), x2_.resize(m), y2_.resize(m);
    area_.resize(m), x2max_.resize(m);
    alive_.assign(m, 1);
    alive_count_ = m;
    for (int64_t p = 0; p < m; ++p) {
      const int64_t i = sorted[p];
      position_[i] = p;
      cat_[p] = b_.cat[i];
      x1_[p] = b_.x1[i], y1_[p] = b_.y1[i], x2_[p] = b_.x2[i], y2_[p] = b_.y2[i];
      area_[p] = b_.area[i];
      const bool first = p == 0 || cat_[p] != cat_[p - 1];
      x2max_[p] = first ? x2_[p] : max_(x2max_[p - 1], x2_[p]);
      if (first) cats_.push_back(cat_[p]), cat_begin_.push_back(p);
    }
    cat_begin_.push_back(m);
  }

  const Boxes<acc_t>& b_;
  std::vector<int64_t> position_;  // position of box i, or -1 once compacted away
  std::vector<int64_t> index_, cat_;
  std::vector<int64_t> cats_, cat_begin_;  // the categories present, and where each begins
  std::vector<acc_t> x1_, y1_, x2_, y2_, area_, x2max_;
  std::vector<uint8_t> alive_;
  int64_t alive_count_ = 0;
};

template <typename scalar_t, typename acc_t>
Boxes<acc_t> read_boxes(const Tensor& boxes, const Tensor& scores, const int64_t* idxs) {
  const int64_t n = boxes.size(0);
  const scalar_t* b = boxes.const_data_ptr<scalar_t>();
  const acc_t* s = scores.const_data_ptr<acc_t>();
  Boxes<acc_t> out;
  bool finite = true;
  out.x1.resize(n), out.y1.resize(n), out.x2.resize(n), out.y2.resize(n);
  out.area.resize(n), out.score.resize(n), out.cat.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    out.x1[i] = static_cast<acc_t>(b[4 * i]);
    out.y1[i] = static_cast<acc_t>(b[4 * i + 1]);
    out.x2[i] = static_cast<acc_t>(b[4 * i + 2]);
    out.y2[i] = static_cast<acc_t>(b[4 * i + 3]);
    out.area[i] = merge_area(out.x1[i], out.y1[i], out.x2[i], out.y2[i]);
    out.score[i] = s[i];
    out.cat[i] = idxs != nullptr ? idxs[i] : 0;
    finite &= std::isfinite(out.x1[i]) & std::isfinite(out.y1[i]) & std::isfinite(out.x2[i]) &
              std::isfinite(out.y2[i]) & std::isfinite(out.score[i]);
  }
  // Checked in this serial pass rather than by ATen reductions before it: a
  // thread-pool round trip costs more than the merge on a busy machine.
  if (!finite) nms_detail::check_finite(boxes, scores);  // raises, naming the tensor
  return out;
}

template <typename acc_t>
std::vector<int64_t> visiting_order(const Boxes<acc_t>& b, int64_t n) {
  struct Key {
    acc_t s, x1, y1, x2, y2;
    int64_t i;
  };
  std::vector<Key> keys(n);  // sorted by value: no indirection in the comparisons
  for (int64_t i = 0; i < n; ++i) keys[i] = {b.score[i], b.x1[i], b.y1[i], b.x2[i], b.y2[i], i};
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& c) {
    return visits_before(a.s, a.x1, a.y1, a.x2, a.y2, a.i, c.s, c.x1, c.y1, c.x2, c.y2, c.i);
  });
  std::vector<int64_t> order(n);
  for (int64_t r = 0; r < n; ++r) order[r] = keys[r].i;
  return order;
}

// The merged box of keeper `k` and its candidates, in order: a candidate is
// merged when it matches the box merged so far, else dropped (SAHI's re-check).
template <typename acc_t>
void merge_group(const Boxes<acc_t>& b, MatchMetric metric, acc_t threshold, int64_t k,
                 const int64_t* members, int64_t count, acc_t* out) {
  acc_t x1 = b.x1[k], y1 = b.y1[k], x2 = b.x2[k], y2 = b.y2[k];
  acc_t area = b.area[k];
  for (int64_t m = 0; m < count; ++m) {
    const int64_t j = members[m];
    const acc_t v = match_value(metric, x1, y1, x2, y2, area, b.x1[j], b.y1[j], b.x2[j], b.y2[j], b.area[j]);
    if (!(v >= threshold)) continue;
    x1 = min_(x1, b.x1[j]), y1 = min_(y1, b.y1[j]);
    x2 = max_(x2, b.x2[j]), y2 = max_(y2, b.y2[j]);
    area = merge_area(x1, y1, x2, y2);
  }
  out[0] = x1, out[1] = y1, out[2] = x2, out[3] = y2;
}

// keep (original indices, visiting order) and their merged boxes [K * 4].
template <typename acc_t>
std::pair<std::vector<int64_t>, std::vector<acc_t>> greedy_nmm_impl(
    const Boxes<acc_t>& b, int64_t n, MatchMetric metric, double match_threshold) {
  const std::vector<int64_t> order = visiting_order(b, n);
  std::vector<int64_t> rank(n);
  for (int64_t r = 0; r < n; ++r) rank[order[r]] = r;
  ActiveIndex<acc_t> index(b, n);
  std::vector<uint8_t> settled(n, 0), matched;
  std::vector<int64_t> keep, candidates;
  std::vector<acc_t> merged;
  const acc_t threshold = merge_threshold<acc_t>(match_threshold);
  // A positive threshold needs a positive intersection; otherwise every pair matches.
  const bool prune = threshold > acc_t(0);  // the rounded threshold: 1e-81 is 0 in float32
  InterruptCheck interrupt;

  for (int64_t r = 0; r < n && index.alive_count() > 0; ++r) {
    const int64_t k = order[r];
    if (settled[k]) continue;
    settled[k] = 1;
    index.remove(k);
    const auto [lo, hi] = index.window(b.cat[k], b.x1[k], b.x2[k], prune);
    matched.resize(hi - lo);
    index.match(metric, b.x1[k], b.y1[k], b.x2[k], b.y2[k], b.area[k], threshold, lo, hi, matched.data());
    candidates.clear();
    for (int64_t p = lo; p < hi; ++p) {
      if (!matched[p - lo]) continue;
      const int64_t j = index.index_at(p);
      candidates.push_back(j);
      settled[j] = 1;
      index.remove(j);
    }
    // SAHI's candidates come in the visiting order.
    std::sort(candidates.begin(), candidates.end(),
              [&](int64_t i, int64_t j) { return rank[i] < rank[j]; });
    keep.push_back(k);
    merged.resize(merged.size() + 4);
    merge_group(b, metric, threshold, k, candidates.data(), static_cast<int64_t>(candidates.size()),
                merged.data() + merged.size() - 4);
    index.maybe_compact();
    interrupt.poll(hi - lo);
  }
  return {keep, merged};
}

template <typename acc_t>
std::pair<std::vector<int64_t>, std::vector<acc_t>> nmm_impl(
    const Boxes<acc_t>& b, int64_t n, MatchMetric metric, double match_threshold) {
  const std::vector<int64_t> order = visiting_order(b, n);
  ActiveIndex<acc_t> index(b, n);
  std::vector<int64_t> group(n, -1), keep, claims, claimed;
  claims.reserve(n);
  std::vector<uint8_t> matched;
  const acc_t threshold = merge_threshold<acc_t>(match_threshold);
  const bool prune = threshold > acc_t(0);  // the rounded threshold: 1e-81 is 0 in float32
  InterruptCheck interrupt;

  for (int64_t r = 0; r < n && index.alive_count() > 0; ++r) {
    const int64_t i = order[r];
    if (group[i] < 0) {  // unclaimed: a keeper of its own group
      group[i] = static_cast<int64_t>(keep.size());
      keep.push_back(i);
      index.remove(i);
    }
    const auto [lo, hi] = index.window(b.cat[i], b.x1[i], b.x2[i], prune);
    matched.resize(hi - lo);
    index.match(metric, b.x1[i], b.y1[i], b.x2[i], b.y2[i], b.area[i], threshold, lo, hi, matched.data());
    claimed.clear();
    for (int64_t p = lo; p < hi; ++p) {
      if (!matched[p - lo]) continue;
      const int64_t j = index.index_at(p);
      if (!dominates(b.score[i], b.x1[i], b.y1[i], b.x2[i], b.y2[i],
                     b.score[j], b.x1[j], b.y1[j], b.x2[j], b.y2[j])) {
        continue;
      }
      claimed.push_back(j);
    }
    // SAHI takes one box's claims in index order.
    std::sort(claimed.begin(), claimed.end());
    for (const int64_t j : claimed) {
      group[j] = group[i];
      claims.push_back(j);
      index.remove(j);
    }
    index.maybe_compact();
    interrupt.poll(hi - lo);
  }
  // Boxes left once the index ran empty were all claimed before; the loop
  // above stops early only then. Members of each group in claim order.
  const int64_t groups = static_cast<int64_t>(keep.size());
  std::vector<int64_t> start(groups + 1, 0), members(claims.size());
  for (const int64_t j : claims) ++start[group[j] + 1];
  std::partial_sum(start.begin(), start.end(), start.begin());
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (const int64_t j : claims) members[fill[group[j]]++] = j;
  }
  std::vector<acc_t> merged(4 * groups);
  for (int64_t g = 0; g < groups; ++g) {  // O(N) in all: not worth a thread pool
    merge_group(b, metric, threshold, keep[g], members.data() + start[g], start[g + 1] - start[g],
                merged.data() + 4 * g);
  }
  return {keep, merged};
}

std::tuple<Tensor, Tensor, Tensor> merge_cpu(
    const Tensor& boxes, const Tensor& scores, const std::optional<Tensor>& idxs,
    double match_threshold, std::string_view metric_name, bool greedy) {
  const MatchMetric metric = check_merge_args(boxes, scores, idxs, match_threshold, metric_name);
  if (boxes.size(0) == 0) {
    return {new_empty({0}, ScalarType::Long), new_empty({0, 4}, boxes.scalar_type()),
            new_empty({0}, scores.scalar_type())};
  }
  const Tensor bx = as_contiguous(boxes);
  const std::optional<Tensor> c = idxs.has_value() ? std::optional(as_contiguous(*idxs)) : std::nullopt;
  const int64_t* cat = c.has_value() ? c->const_data_ptr<int64_t>() : nullptr;
  const int64_t n = boxes.size(0);
  Tensor keep, merged;
  dispatch_floating(bx.scalar_type(), "boxes", [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    using acc_t = acc_type<scalar_t>;
    const ScalarType acc = scalar_type_of<acc_t>();
    const Tensor s = as_contiguous(to_dtype(scores, acc));
    const Boxes<acc_t> b = read_boxes<scalar_t, acc_t>(bx, s, cat);
    auto [k, m] = greedy ? greedy_nmm_impl(b, n, metric, match_threshold)
                         : nmm_impl(b, n, metric, match_threshold);
    keep = from_vector(k, ScalarType::Long);
    merged = to_dtype(from_vector(m, acc, {static_cast<int64_t>(m.size() / 4), 4}), boxes.scalar_type());
  });
  // The keeper scores highest in its group: its score is the group's.
  return {keep, merged, select_by_index(scores, 0, keep)};
}

std::tuple<Tensor, Tensor, Tensor> greedy_nmm_cpu(
    const Tensor& boxes, const Tensor& scores, const std::optional<Tensor>& idxs,
    double match_threshold, std::string_view metric) {
  return merge_cpu(boxes, scores, idxs, match_threshold, metric, /*greedy=*/true);
}

std::tuple<Tensor, Tensor, Tensor> nmm_cpu(
    const Tensor& boxes, const Tensor& scores, const std::optional<Tensor>& idxs,
    double match_threshold, std::string_view metric) {
  return merge_cpu(boxes, scores, idxs, match_threshold, metric, /*greedy=*/false);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(scalekit, CPU, m) {
  m.impl("greedy_nmm", TORCH_BOX(&greedy_nmm_cpu));
  m.impl("nmm", TORCH_BOX(&nmm_cpu));
}

}  // namespace scalekit
