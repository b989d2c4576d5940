// The scalekit op library, scalekit._C_stable: every schema is declared here,
// once. It is built on torch's stable ABI only (torch/csrc/stable, targeting
// the oldest supported torch, see setup.py), so one binary loads on that torch
// and every later one. The CPU kernels attach with STABLE_TORCH_LIBRARY_IMPL
// in csrc/<family>/cpu/; the CUDA kernels, still on the classic ABI, live in a
// second library (scalekit._C_cuda, csrc/scalekit_cuda.cpp). Fake (meta)
// kernels and Python-side checks live in scalekit/ops/.
#include <Python.h>

#include <torch/csrc/stable/library.h>

#include "common/interrupt.h"

#ifndef SCALEKIT_TORCH_TARGET
#define SCALEKIT_TORCH_TARGET "unknown"
#endif

STABLE_TORCH_LIBRARY(scalekit, m) {
  // Greedy NMS. `idxs` (optional, int64 [N]) restricts suppression to boxes of
  // the same category. Returns kept indices sorted by decreasing score.
  m.def(
      "nms(Tensor boxes, Tensor scores, Tensor? idxs, float iou_threshold, "
      "float pixel_offset) -> Tensor");
  // Soft-NMS (Bodla et al. 2017). method: "linear" | "gaussian" | "hard".
  // Returns (kept indices in selection order, their decayed scores).
  m.def(
      "soft_nms(Tensor boxes, Tensor scores, Tensor? idxs, float iou_threshold, "
      "float sigma, float score_threshold, str method, float pixel_offset) "
      "-> (Tensor, Tensor)");
  // Non-maximum merging (SAHI's GREEDYNMM and NMM): boxes matched at
  // metric >= match_threshold (metric: "iou" | "ios") merge into their union.
  // Returns (keeper indices in visiting order, [K, 4] merged boxes, [K] scores).
  m.def(
      "greedy_nmm(Tensor boxes, Tensor scores, Tensor? idxs, float match_threshold, "
      "str metric) -> (Tensor, Tensor, Tensor)");
  m.def(
      "nmm(Tensor boxes, Tensor scores, Tensor? idxs, float match_threshold, "
      "str metric) -> (Tensor, Tensor, Tensor)");

  // Position-sensitive RoI pooling (R-FCN, Dai et al. 2016). rois: [K, 5]
  // (batch index, x1, y1, x2, y2); input [N, C * ph * pw, H, W] -> [K, C, ph, pw].
  m.def(
      "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width) -> Tensor");
  m.def(
      "_ps_roi_pool_backward(Tensor grad, Tensor rois, float spatial_scale, "
      "int pooled_height, int pooled_width, SymInt batch_size, SymInt channels, "
      "SymInt height, SymInt width) -> Tensor");
  m.def(
      "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "_ps_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, "
      "int pooled_height, int pooled_width, int sampling_ratio, bool aligned, "
      "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor");
  // Deformable position-sensitive RoI pooling (Dai et al. 2017). offset:
  // [K, 2, part_height, part_width] normalised (x, y) offsets, or None.
  m.def(
      "deform_ps_roi_pool(Tensor input, Tensor rois, Tensor? offset, float spatial_scale, "
      "int pooled_height, int pooled_width, int group_height, int group_width, "
      "int part_height, int part_width, int sample_per_part, float trans_std) -> Tensor");
  m.def(
      "_deform_ps_roi_pool_backward(Tensor grad, Tensor input, Tensor rois, Tensor? offset, "
      "float spatial_scale, int pooled_height, int pooled_width, int group_height, "
      "int group_width, int part_height, int part_width, int sample_per_part, "
      "float trans_std) -> (Tensor, Tensor)");

  // SNIPER's greedy chip cover for one image (scalekit.chips; CPU only). boxes [N, 4]
  // float64 in original pixels, need [L, N] bool, factors [L] float64, window starts
  // xs / ys float64 with per-level slices given by x_offsets / y_offsets [L + 1].
  // Returns (picks [P, 3] int64 (level, index into xs, index into ys), members [P, N]
  // bool (boxes inside each picked window), coverable [L, N] bool).
  m.def(
      "chip_cover(Tensor boxes, Tensor need, Tensor factors, Tensor xs, Tensor ys, "
      "Tensor x_offsets, Tensor y_offsets, float chip, int[] min_count) -> (Tensor, Tensor, Tensor)");

  // ActivityNet results JSON in one pass (scalekit.evaluation, private; CPU only). data: the
  // file's bytes, uint8 [B]. Returns (info int64 [3]: (1 if read else 0, the results object's
  // '{' and '}' offsets), counts [V] int64, video key spans [V, 2], unique label spans [L, 2]
  // (first appearance order; byte offsets [start, end)), label codes [N] int64, segments
  // [N, 2] float64, scores [N] float64); all empty when it declines.
  m.def("_anet_scan(Tensor data) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");

  // Deformable convolution v1 / v2 (Dai et al. 2017; Zhu et al. 2019), torchvision's
  // layout: offset [N, 2 * offset_groups * kH * kW, H_out, W_out] as (dy, dx) pairs,
  // mask [N, offset_groups * kH * kW, H_out, W_out] or None.
  m.def(
      "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor? mask, Tensor? bias, "
      "int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, "
      "int groups, int offset_groups) -> Tensor");
  m.def(
      "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor? mask, "
      "Tensor? bias, int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, "
      "int groups, int offset_groups) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

namespace {

// Raises the exception a signal handler raised inside a kernel (common/interrupt.h);
// returns None when there is none.
PyObject* reraise_interrupt(PyObject*, PyObject*) {
  scalekit::PendingInterrupt& p = scalekit::pending_interrupt();
  if (p.type == nullptr) Py_RETURN_NONE;
  PyErr_Restore(p.type, p.value, p.traceback);  // steals the references
  p = scalekit::PendingInterrupt{};
  return nullptr;
}

PyMethodDef methods[] = {
    {"_reraise_interrupt", reraise_interrupt, METH_NOARGS,
     "Raise the exception a signal handler raised inside a kernel, if any."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

// The built library is also a Python extension module, so that
// `import scalekit._C_stable` loads it and registers the ops above.
extern "C" PyMODINIT_FUNC PyInit__C_stable(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C_stable", "scalekit's compiled op library (torch stable ABI)", -1, methods};
  PyObject* module = PyModule_Create(&module_def);
  // The oldest torch this binary loads on ("2.10"): the stable ABI's target.
  if (module != nullptr &&
      PyModule_AddStringConstant(module, "torch_target", SCALEKIT_TORCH_TARGET) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
