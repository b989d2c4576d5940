"""Run torchvision's own ``test/test_ops.py`` against scalekit's ops (not a pytest file).

Given a checkout of pytorch/vision, this runs the test classes of the ops that
scalekit claims to replace (``TestPSRoIPool``, ``TestPSRoIAlign``, ``TestNMS``,
``TestDeformConv``) on the CPU, with ``torchvision.ops.{nms, batched_nms,
ps_roi_pool, PSRoIPool, ps_roi_align, PSRoIAlign, deform_conv2d, DeformConv2d}``
swapped for scalekit's, and prints pass/fail counts and every failure. The
TorchScript cases are set aside: tests that only script
(``test_forward_scriptability``) are deselected and ``torch.jit.script`` is the
identity inside the others, so their scripted halves run eagerly. Nothing of
torchvision is copied into scalekit; the checkout is read where it lies.
``docs/conventions.rst`` lists each remaining failure and why it stays.

Usage (from the repository root, with scalekit built)::

    python tests/ops/run_torchvision_test_ops.py /path/to/vision            # scalekit's ops
    python tests/ops/run_torchvision_test_ops.py /path/to/vision --ops torchvision   # the baseline
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

CLASSES = ("TestPSRoIPool", "TestPSRoIAlign", "TestNMS", "TestDeformConv")
SCRIPT_ONLY = ("test_forward_scriptability", "test_jit_")


def _swap_ops() -> None:
    """Put scalekit's ops where torchvision's test file looks them up."""
    import torchvision.ops
    import torchvision.ops.boxes

    import scalekit.ops as sk

    for name in ("nms", "batched_nms", "ps_roi_pool", "PSRoIPool", "ps_roi_align", "PSRoIAlign",
                 "deform_conv2d", "DeformConv2d"):
        setattr(torchvision.ops, name, getattr(sk, name))
    # torchvision's own batched_nms strategies call the module-level nms.
    torchvision.ops.boxes.nms = sk.nms
    torchvision.ops.boxes.batched_nms = sk.batched_nms


class _Plugin:
    def __init__(self, swap: bool) -> None:
        self.swap = swap
        self.outcomes: dict[str, tuple[str, str]] = {}

    def pytest_configure(self, config) -> None:
        import torch

        if self.swap:
            _swap_ops()
        torch.jit.script = lambda obj, *args, **kwargs: obj  # TorchScript set aside

    def pytest_collection_modifyitems(self, items) -> None:
        items[:] = [it for it in items if not any(s in it.name for s in SCRIPT_ONLY)]

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            reason = ""
            if report.failed:
                text = str(report.longrepr)
                errors = [line for line in text.splitlines() if line.startswith("E ")]
                reason = errors[0][1:].strip() if errors else text.splitlines()[-1]
            self.outcomes[report.nodeid] = (report.outcome, reason)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vision", help="path of a pytorch/vision checkout (its test/ folder is used)")
    parser.add_argument("--ops", choices=("scalekit", "torchvision"), default="scalekit")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    import pytest

    test_dir = os.path.join(os.path.abspath(args.vision), "test")
    test_file = os.path.join(test_dir, "test_ops.py")
    if not os.path.isfile(test_file):
        parser.error(f"no test/test_ops.py under {args.vision}")
    plugin = _Plugin(swap=args.ops == "scalekit")
    node_ids = [f"{test_file}::{cls}" for cls in CLASSES]
    os.chdir(test_dir)
    pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", test_dir, *node_ids, *args.pytest_args],
                plugins=[plugin])

    counts = collections.Counter(outcome for outcome, _ in plugin.outcomes.values())
    ran = counts["passed"] + counts["failed"]
    print(f"\n{args.ops} ops: {ran} tests run on the CPU, {counts['passed']} passed, {counts['failed']} failed "
          f"({counts['skipped']} skipped: CUDA/MPS)")
    by_test = collections.defaultdict(list)
    for node, (outcome, reason) in sorted(plugin.outcomes.items()):
        if outcome == "failed":
            by_test[node.split("::", 1)[1].split("[")[0]].append(reason)
    for test, reasons in by_test.items():
        print(f"  FAILED {test} x{len(reasons)}: {collections.Counter(reasons).most_common(1)[0][0][:160]}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
