// Ctrl-C for long CPU kernels.
//
// A kernel called through torch.ops runs with the GIL released, so Python's
// SIGINT handler only sets a flag that nobody reads until the kernel returns.
// A kernel whose work can grow large (Soft-NMS on dense clusters) calls
// `InterruptCheck::poll(work)` in its main loop. Every ~100 ms of wall time it
// takes the GIL for a moment and runs PyErr_CheckSignals() (the mechanism of
// faiss's PythonInterruptCallback). If a handler raised (KeyboardInterrupt
// from Ctrl-C), the Python exception is taken out of the interpreter and kept
// (pending_interrupt()), and the kernel leaves by std::runtime_error with
// kInterruptedMessage: the stable ABI carries C++ exceptions only, and no
// pybind11 object may cross it. scalekit.ops sees that message and re-raises
// the kept exception through scalekit._C_stable._reraise_interrupt(), so the
// caller gets the handler's own exception and traceback; a direct
// torch.ops.scalekit call gets the RuntimeError. Signal handlers run only in
// Python's main thread, so a call from another thread is never interrupted.
// Without a Python interpreter (libtorch alone) the check does nothing. The
// kernel must own no state that leaks when an exception leaves it (plain
// std::vector / tensors only).
#pragma once

#include <Python.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>

namespace scalekit {

// Keep in sync with scalekit/_ext.py (_INTERRUPTED).
constexpr const char* kInterruptedMessage =
    "scalekit: interrupted by a Python signal handler (scalekit.ops re-raises its exception)";

// The exception a signal handler raised inside a kernel, until Python takes it
// back (guarded by the GIL). One per process: only the main thread runs handlers.
struct PendingInterrupt {
  PyObject* type = nullptr;
  PyObject* value = nullptr;
  PyObject* traceback = nullptr;
};
inline PendingInterrupt& pending_interrupt() {
  static PendingInterrupt pending;
  return pending;
}

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
      PendingInterrupt& p = pending_interrupt();
      Py_XDECREF(p.type), Py_XDECREF(p.value), Py_XDECREF(p.traceback);
      PyErr_Fetch(&p.type, &p.value, &p.traceback);  // takes the handler's exception
      PyGILState_Release(state);
      throw std::runtime_error(kInterruptedMessage);
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
