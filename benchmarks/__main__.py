"""Run benchmark cases, print a table, write JSON (see benchmarks/__init__.py)."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

CASES = ("phantom", "phantom_difficulty", "prepare", "counterfactual", "retrieval", "ann", "embed", "train", "gan", "app")


DEVICE_CASES = ("counterfactual", "embed", "train", "gan")  # their ``run`` takes ``device``; the rest are CPU-only


def _cases_to_run(only: list[str] | None, device: str) -> list[str]:
    """``only`` (or every case); on a GPU, only the device-aware ones (naming a CPU-only one is an error)."""
    names = only or list(CASES)
    if device == "cpu":
        return names
    if only and set(only) - set(DEVICE_CASES):
        raise SystemExit(f"--device {device}: {', '.join(sorted(set(only) - set(DEVICE_CASES)))} measure(s) on "
                         f"the CPU only; device-aware cases: {', '.join(DEVICE_CASES)}")
    return [n for n in names if n in DEVICE_CASES]


def _hardware() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _set_threads(n: int) -> None:
    """``n`` threads for torch, FAISS and every OpenMP/BLAS pool loaded (scikit-learn's included)."""
    import faiss
    import sklearn.neighbors  # noqa: F401  (loads its OpenMP runtime, so the limit below reaches it)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    threadpool_limits(n)


def _previous(path: Path, quick: bool) -> dict:
    """Results already in ``path`` from a run of the same mode, so ``--only`` updates one case, keeping the rest."""
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return old if old.get("quick") == quick and isinstance(old.get("cases"), dict) else {}


def _print(out: dict, indent: int = 2) -> None:
    """One line per figure; nested dicts indented, lists of rows one row a line."""
    pad = " " * indent
    for key, value in out.items():
        if isinstance(value, dict):
            print(f"{pad}{key}:")
            _print(value, indent + 2)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            print(f"{pad}{key}:")
            for row in value:
                print(f"{pad}  {row}")
        else:
            print(f"{pad}{key:<{34 - indent}} {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that each case runs")
    parser.add_argument("--only", choices=CASES, action="append", help="run only this case (repeatable)")
    parser.add_argument("--threads", type=int, default=None,
                        help="compute threads (torch, FAISS, OpenMP/BLAS); default: the libraries' own (all cores), "
                             "1 with --quick")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the device-aware cases (embed, train, gan, counterfactual) measure; with cuda "
                             "only those run and their results are stored as NAME@cuda")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"), help="JSON output")
    args = parser.parse_args(argv)
    import reid_core  # noqa: F401  (torchvision shim before anything imports timm)

    threads = args.threads or (1 if args.quick else None)  # quick: a smoke test on a shared machine
    if threads:
        _set_threads(threads)
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    results = _previous(args.out, args.quick) if args.only else {}
    results.update({"hardware": _hardware(), "quick": args.quick, "command": command, "threads": threads})
    results.setdefault("cases", {})
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device here")
    for name in _cases_to_run(args.only, args.device):
        module = importlib.import_module(f"benchmarks.bench_{name}")
        t0 = time.perf_counter()
        out = module.run(quick=args.quick, **({"device": args.device} if name in DEVICE_CASES else {}))
        out["wall_s"] = round(time.perf_counter() - t0, 2)
        out["measured"] = {"hardware": results["hardware"], "command": command, "threads": threads,
                           "date": time.strftime("%Y-%m-%d %H:%M"), "load_avg_1m_at_end": _load()}
        key = name if args.device == "cpu" else f"{name}@{args.device}"
        results["cases"][key] = out
        print(f"\n== {key}")
        _print(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
