"""Run benchmark cases, print a table, write JSON (see benchmarks/__init__.py)."""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

CASES = ("phantom", "prepare", "counterfactual")  # more cases join with their issues (embed, train, retrieval, app)


def _hardware() -> str:
    import os

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that each case runs")
    parser.add_argument("--only", choices=CASES, action="append", help="run only this case (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"), help="JSON output")
    args = parser.parse_args(argv)
    import reid_core  # noqa: F401  (torchvision shim before anything imports timm)

    results = {"hardware": _hardware(), "quick": args.quick, "command": "python -m benchmarks " + " ".join(argv or sys.argv[1:]),
               "cases": {}}
    for name in args.only or CASES:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        t0 = time.perf_counter()
        out = module.run(quick=args.quick)
        out["wall_s"] = round(time.perf_counter() - t0, 2)
        results["cases"][name] = out
        print(f"\n== {name}")
        for key, value in out.items():
            print(f"  {key:<32} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
