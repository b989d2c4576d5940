// Soft-NMS (Bodla, Singh, Chellappa, Davis, ICCV 2017) on the CPU.
//
// The paper's loop selects the highest-scoring remaining box and decays every
// other box by a function of its IoU with it. Here a selected box visits only
// the boxes its spatial window holds (the boxes a decay can change are exactly
// those with positive overlap for gaussian, IoU above the threshold for linear
// and hard), and the selection is the root of a tournament tree over the
// window order: after a selection the tree is rebuilt over the range of
// positions the decay changed, which costs that range plus its log N path.
// Work is O(N log N + boxes visited by the windows), memory O(N).
//
// (An earlier version used a max-heap with lazy deletion that pushed a box
// again at every decay: on a dense cluster that is one heap entry per
// overlapping pair, O(pairs log pairs) time and O(pairs) memory, about
// N^2.7 on identical boxes.)
#include <algorithm>
#include <tuple>

#include "common/interrupt.h"
#include "common/stable.h"
#include "nms/cpu/finite.h"
#include "nms/cpu/spatial_index.h"
#include "nms/iou.h"
#include "nms/nms_checks.h"

namespace scalekit {
namespace {

using namespace nms_detail;

// Winner tree over positions [0, n): a node holds the best live position of
// its leaves (or -1), the best being the highest score, ties to the lowest
// original index.
template <typename acc_t>
class Tournament {
 public:
  Tournament(const std::vector<acc_t>& score, const std::vector<uint8_t>& alive,
             const std::vector<int64_t>& index)
      : score_(score), alive_(alive), index_(index) {
    const int64_t n = static_cast<int64_t>(score.size());
    while (leaves_ < n) leaves_ *= 2;
    node_.assign(2 * leaves_, -1);
    update(0, n);
  }

  int64_t best() const { return node_[1]; }

  // Refresh the leaves [lo, hi) from `alive` and the nodes above them.
  // Returns the number of nodes rebuilt.
  int64_t update(int64_t lo, int64_t hi) {
    if (lo >= hi) return 0;
    for (int64_t p = lo; p < hi; ++p) node_[leaves_ + p] = alive_[p] ? p : -1;
    int64_t a = (leaves_ + lo) / 2, b = (leaves_ + hi - 1) / 2, work = hi - lo;
    for (; a >= 1; a /= 2, b /= 2) {
      for (int64_t v = a; v <= b; ++v) node_[v] = better(node_[2 * v], node_[2 * v + 1]);
      work += b - a + 1;
    }
    return work;
  }

 private:
  int64_t better(int64_t p, int64_t q) const {
    if (q < 0) return p;
    if (p < 0) return q;
    if (score_[p] != score_[q]) return score_[p] > score_[q] ? p : q;
    return index_[p] < index_[q] ? p : q;
  }

  const std::vector<acc_t>& score_;
  const std::vector<uint8_t>& alive_;
  const std::vector<int64_t>& index_;
  int64_t leaves_ = 1;
  std::vector<int64_t> node_;
};

template <typename scalar_t, typename acc_t>
std::tuple<Tensor, Tensor> soft_nms_cpu_impl(
    const Tensor& boxes, const Tensor& scores, const int64_t* idxs,
    double iou_threshold, double sigma, double score_threshold,
    SoftNMSMethod method, double pixel_offset) {
  const int64_t n = boxes.size(0);
  const auto s = build_spatial_index<scalar_t, acc_t>(
      boxes.const_data_ptr<scalar_t>(), n, idxs, static_cast<acc_t>(pixel_offset));
  const acc_t* in_scores = scores.const_data_ptr<acc_t>();

  std::vector<acc_t> score(n);
  std::vector<uint8_t> alive(n);
  for (int64_t p = 0; p < n; ++p) {
    score[p] = in_scores[s.index[p]];
    alive[p] = !(static_cast<double>(score[p]) < score_threshold);
  }
  Tournament<acc_t> tree(score, alive, s.index);
  InterruptCheck interrupt;

  const acc_t threshold = threshold_as<acc_t>(iou_threshold);
  const acc_t sig = static_cast<acc_t>(sigma);
  // Gaussian decay touches only boxes with IoU > 0; linear and hard decay only
  // boxes with IoU > iou_threshold, which needs overlap when the threshold >= 0.
  const bool prune = method == SoftNMSMethod::kGaussian || iou_threshold >= 0;
  std::vector<int64_t> keep;
  std::vector<acc_t> kept_scores;

  for (int64_t p = tree.best(); p >= 0; p = tree.best()) {
    alive[p] = 0;
    keep.push_back(s.index[p]);
    kept_scores.push_back(score[p]);
    const auto [lo, hi] = prune ? s.window(p) : s.segment(p);
    // The positions whose score or liveness changed: p and the decayed boxes.
    int64_t changed_lo = p, changed_hi = p + 1;
    for (int64_t j = lo; j < hi; ++j) {
      if (!alive[j]) continue;
      const acc_t iou = box_iou(
          s.x1[p], s.y1[p], s.x2[p], s.y2[p], s.area[p], s.x1[j], s.y1[j], s.x2[j],
          s.y2[j], s.area[j], s.off);
      const acc_t weight = soft_nms_weight(method, iou, threshold, sig);
      if (weight == acc_t(1)) continue;
      if (method == SoftNMSMethod::kHard) {
        alive[j] = 0;  // removed, as by greedy NMS
      } else {
        const acc_t decayed = soft_nms_decay(score[j], weight);
        if (decayed == score[j]) continue;  // e.g. 0 stays 0: nothing to rebuild
        score[j] = decayed;
        alive[j] = !(static_cast<double>(decayed) < score_threshold);
      }
      changed_lo = std::min(changed_lo, j);
      changed_hi = std::max(changed_hi, j + 1);
    }
    interrupt.poll((hi - lo) + tree.update(changed_lo, changed_hi));
  }
  return {
      from_vector(keep, ScalarType::Long),
      from_vector(kept_scores, scalar_type_of<acc_t>())};
}

std::tuple<Tensor, Tensor> soft_nms_cpu(
    const Tensor& boxes, const Tensor& scores,
    const std::optional<Tensor>& idxs, double iou_threshold, double sigma,
    double score_threshold, std::string_view method, double pixel_offset) {
  const SoftNMSMethod m = check_soft_nms_args(
      boxes, scores, idxs, iou_threshold, sigma, score_threshold, method, pixel_offset);
  if (boxes.size(0) == 0) {
    return {new_empty({0}, ScalarType::Long), new_empty({0}, scores.scalar_type())};
  }
  check_finite(boxes, scores);
  const Tensor b = as_contiguous(boxes);
  const std::optional<Tensor> c = idxs.has_value() ? std::optional(as_contiguous(*idxs)) : std::nullopt;
  const int64_t* cat = c.has_value() ? c->const_data_ptr<int64_t>() : nullptr;
  Tensor keep, kept_scores;
  dispatch_floating(b.scalar_type(), "boxes", [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    using acc_t = acc_type<scalar_t>;
    const Tensor acc_scores = as_contiguous(to_dtype(scores, scalar_type_of<acc_t>()));
    std::tie(keep, kept_scores) = soft_nms_cpu_impl<scalar_t, acc_t>(
        b, acc_scores, cat, iou_threshold, sigma, score_threshold, m, pixel_offset);
  });
  return {keep, to_dtype(kept_scores, scores.scalar_type())};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(scalekit, CPU, m) {
  m.impl("soft_nms", TORCH_BOX(&soft_nms_cpu));
}

}  // namespace scalekit
