// The scalekit op library: every schema is declared here, once.
// Kernels attach per device with TORCH_LIBRARY_IMPL in csrc/<family>/{cpu,cuda}/;
// fake (meta) kernels and Python-side checks live in scalekit/ops/.
#include <Python.h>
#include <torch/library.h>

#ifndef SCALEKIT_TORCH_VERSION
#define SCALEKIT_TORCH_VERSION "unknown"
#endif

TORCH_LIBRARY(scalekit, m) {
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
}

// The built library is also an (empty) Python extension module, so that
// `import scalekit._C` loads it and registers the ops above.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "scalekit's compiled op library", -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module != nullptr &&
      PyModule_AddStringConstant(module, "torch_version", SCALEKIT_TORCH_VERSION) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
