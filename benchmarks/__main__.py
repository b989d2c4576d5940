"""python -m benchmarks [suite ...] [--quick]: run benchmark suites (default: all)."""

import argparse
import importlib

import torch

SUITES = ["nms", "ps_roi", "deform_conv", "chips", "eval", "heads", "video"]

parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
parser.add_argument("suites", nargs="*", metavar="suite", help=f"suites to run, from {SUITES} (default: all)")
parser.add_argument("--quick", action="store_true", help="smaller sizes only")
args = parser.parse_args()
unknown = sorted(set(args.suites) - set(SUITES))
if unknown:
    parser.error(f"unknown suite(s) {unknown}; choose from {SUITES}")
print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
      + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
for name in args.suites or SUITES:
    importlib.import_module(f"benchmarks.{name}").run(quick=args.quick)
