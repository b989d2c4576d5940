// scalekit._C_cuda: the CUDA kernels, on torch's classic C++ ABI (built only
// with FORCE_CUDA=1 or a visible GPU). They register with TORCH_LIBRARY_IMPL
// against the schemas that scalekit._C_stable declares, which is loaded first;
// like any classic extension this library loads only with the torch it was
// built against (scalekit._ext checks torch_version).
#include <Python.h>

#ifndef SCALEKIT_TORCH_VERSION
#define SCALEKIT_TORCH_VERSION "unknown"
#endif

extern "C" PyMODINIT_FUNC PyInit__C_cuda(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C_cuda", "scalekit's CUDA kernels (classic torch ABI)", -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module != nullptr &&
      PyModule_AddStringConstant(module, "torch_version", SCALEKIT_TORCH_VERSION) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
