"""Run the official evaluation tools where they lie (never copied into scalekit).

* ActivityNet's ``Evaluation/eval_detection.py`` (``activitynet/ActivityNet``):
  Python 2 code. :func:`load_activitynet` translates it in memory with the
  standard library's ``lib2to3`` (print statements, ``iteritems``), gives it a
  stub ``urllib2`` (only used to fetch blocked videos, which we switch off with
  ``check_status=False``) and a ``numpy`` whose ``np.float`` is ``float``
  (removed in numpy 1.24). Nothing else is touched. It needs ``pandas`` and
  ``joblib``, which scalekit does not depend on: install them into a separate
  folder and put it on ``sys.path`` (``--deps``).
* THUMOS14's MATLAB kits (2014: ``TH14evaldet.m`` + ``TH14eventdetpr.m``; the
  updated kit: ``TH14evalDet_Updated.m``, both with ``intervaloverlapvalseconds.m``),
  run under GNU Octave by :func:`run_thumos14`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
import warnings


def load_activitynet(path: str, deps: str | None = None) -> types.ModuleType:
    """The official ``eval_detection`` module of an ``activitynet/ActivityNet`` checkout."""
    evaluation = os.path.join(path, "Evaluation")
    if not os.path.exists(os.path.join(evaluation, "eval_detection.py")):
        raise FileNotFoundError(f"--activitynet: no Evaluation/eval_detection.py under {path}")
    if deps and deps not in sys.path:
        sys.path.insert(0, deps)
    import numpy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lib2to3 import refactor

        fixers = [f"lib2to3.fixes.fix_{n}" for n in ("print", "dict", "xrange")]
        tool = refactor.RefactoringTool(fixers)
    np_shim = types.ModuleType("numpy_with_float")
    np_shim.__getattr__ = lambda name: float if name == "float" else getattr(numpy, name)
    sys.modules.setdefault("urllib2", types.ModuleType("urllib2"))
    modules = {}
    for name in ("utils", "eval_detection"):
        with open(os.path.join(evaluation, f"{name}.py")) as f:
            source = str(tool.refactor_string(f.read(), name))
        module = types.ModuleType(f"official_activitynet_{name}")
        module.__file__ = os.path.join(evaluation, f"{name}.py")
        saved = sys.modules.get("utils")
        if name == "eval_detection":
            sys.modules["utils"] = modules["utils"]
        try:
            exec(compile(source, module.__file__, "exec"), module.__dict__)
        finally:
            if name == "eval_detection":
                if saved is None:
                    sys.modules.pop("utils", None)
                else:
                    sys.modules["utils"] = saved
        module.np = np_shim
        modules[name] = module
    return modules["eval_detection"]


def activitynet_evaluate(module, gt_file: str, pred_file: str, subset: str = "validation", tiou_thresholds=None):
    """The official ``ANETdetection(...).evaluate()``, one process (joblib's sequential backend)."""
    import joblib

    kwargs = {} if tiou_thresholds is None else {"tiou_thresholds": tiou_thresholds}
    with joblib.parallel_backend("sequential"):
        ev = module.ANETdetection(gt_file, pred_file, subset=subset, check_status=False, **kwargs)
        ev.evaluate()
    return ev


def run_thumos14(kit: str, gt_dir: str, det_file: str, subset: str, threshold: float | None = None,
                 updated: bool = True) -> dict:
    """AP per class (kit order) and thresholds of THUMOS14's kit under Octave."""
    if updated:
        call = f"[pr,ap,m]=TH14evalDet_Updated('{det_file}','{gt_dir}','{subset}',{threshold!r});"
    else:
        call = f"[pr,ap,m]=TH14evaldet('{det_file}','{gt_dir}','{subset}');"
    script = (f"addpath('{kit}'); {call} "
              "for i=1:numel(pr), printf('RESULT %s %.17g %.17g\\n', pr(i).class, pr(i).overlapthresh, pr(i).ap); end")
    out = subprocess.run(["octave", "--no-gui", "--quiet", "--eval", script], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"octave failed:\n{out.stdout}\n{out.stderr}")
    rows = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    return {"rows": [(c, float(t), float(a)) for c, t, a in rows], "log": out.stdout}
