"""python -m benchmarks [suite ...] [--quick]: run benchmark suites (default: all)."""

import argparse
import importlib

import torch

SUITES = ["nms", "ps_roi", "deform_conv", "chips", "eval", "heads", "video"]

parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
parser.add_argument("suites", nargs="*", metavar="suite", help=f"suites to run, from {SUITES} (default: all)")
parser.add_argument("--quick", action="store_true", help="smaller sizes only")
args, extra = parser.parse_known_args()
unknown = sorted(set(args.suites) - set(SUITES))
if unknown:
    parser.error(f"unknown suite(s) {unknown}; choose from {SUITES}")
modules = {name: importlib.import_module(f"benchmarks.{name}") for name in args.suites or SUITES}
options = {}
for name, module in modules.items():  # a suite's own options (e.g. eval --activitynet PATH)
    if hasattr(module, "parse_options"):
        options[name], extra = module.parse_options(extra)
if extra:
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
      + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
for name, module in modules.items():
    module.run(quick=args.quick, **options.get(name, {}))
