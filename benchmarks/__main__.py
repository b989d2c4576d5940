"""python -m benchmarks [suite ...] [--quick] [--device cpu|cuda] [--json PATH]: run benchmark suites (default: all)."""

import argparse
import importlib

import torch

from benchmarks import _common

SUITES = ["nms", "merge", "ps_roi", "deform_conv", "chips", "slicing", "eval", "heads", "video"]

# Suites with options of their own (add_options(parser) and options_from(args)): their
# options are in --help whichever suites are named (python -m benchmarks eval --help).
WITH_OPTIONS = ["nms", "eval", "chips"]

parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
parser.add_argument("suites", nargs="*", metavar="suite", help=f"suites to run, from {SUITES} (default: all)")
parser.add_argument("--quick", action="store_true", help="smaller sizes only")
parser.add_argument("--device", choices=["cpu", "cuda"],
                    help="only this device's rows; with cuda, only the suites that have CUDA rows (default: every device)")
parser.add_argument("--json", metavar="PATH", help="also write every row (times in seconds) to PATH as JSON")
for name in WITH_OPTIONS:
    importlib.import_module(f"benchmarks.{name}").add_options(parser)
args = parser.parse_args()
unknown = sorted(set(args.suites) - set(SUITES))
if unknown:
    parser.error(f"unknown suite(s) {unknown}; choose from {SUITES}")
_common.ONLY_DEVICE = args.device
_common.JSON_PATH = args.json
modules = {name: importlib.import_module(f"benchmarks.{name}") for name in args.suites or SUITES}
if args.device == "cuda":  # suites that time the CPU alone have nothing to show
    modules = {name: m for name, m in modules.items() if getattr(m, "HAS_CUDA_ROWS", False)}
options = {name: module.options_from(args) for name, module in modules.items() if name in WITH_OPTIONS}
print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
      + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
if args.device == "cuda" and _common.cuda_device() is None:
    print("no CUDA device, or scalekit built without CUDA kernels: no CUDA rows to measure")
for name, module in modules.items():
    module.run(quick=args.quick, **options.get(name, {}))
_common.write_json()
