// Ctrl-C for long CPU kernels.
//
// A kernel called through torch.ops runs with the GIL released, so Python's
// SIGINT handler only sets a flag that nobody reads until the kernel returns.
// A kernel whose work can grow large (Soft-NMS on dense clusters) calls
// `InterruptCheck::poll(work)` in its main loop. Every ~100 ms of wall time it
// takes the GIL for a moment and runs PyErr_CheckSignals() (the mechanism of
// faiss's PythonInterruptCallback); if a handler raised (KeyboardInterrupt
// from Ctrl-C), the Python exception travels out of the kernel as
// pybind11::error_already_set, which torch's Python bindings hand back to the
// caller unchanged. Signal handlers run only in Python's main thread, so a
// call from another thread is never interrupted. Without a Python interpreter
// (libtorch alone) the check does nothing. The kernel must own no state that
// leaks when an exception leaves it (plain std::vector / at::Tensor only).
#pragma once

#include <Python.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>

namespace scalekit {

class InterruptCheck {
 public:
  // Add `work` (any unit roughly proportional to time: one box pair visited,
  // one tree node rebuilt) and check for a pending signal every ~100 ms.
  void poll(int64_t work) {
    pending_ += work;
    if (pending_ < kWorkBetweenClockReads) return;
    pending_ = 0;
    const auto now = Clock::now();
    if (now - last_ < kInterval) return;
    last_ = now;
    check_python_signals();
  }

  static void check_python_signals() {
    if (!Py_IsInitialized() || finalizing()) return;
    const PyGILState_STATE state = PyGILState_Ensure();
    if (PyErr_CheckSignals() != 0) {
      pybind11::error_already_set error;  // takes the pending exception
      PyGILState_Release(state);
      throw error;
    }
    PyGILState_Release(state);
  }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr int64_t kWorkBetweenClockReads = int64_t(1) << 16;
  static constexpr std::chrono::milliseconds kInterval{100};

  static bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
  }

  int64_t pending_ = 0;
  Clock::time_point last_ = Clock::now();
};

}  // namespace scalekit
