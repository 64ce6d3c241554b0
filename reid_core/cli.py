"""The ``cxr-reid`` command line: build a workspace step by step.

Each subcommand is resumable and skips work already done; ``--help`` on any of
them shows an example.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from reid_core.errors import CxrReidError
from reid_core.prepare import DATASETS

DEMO_WORKSPACE = Path("workspaces/demo")

log = logging.getLogger("cxr_reid")


def _cmd_phantom(args: argparse.Namespace) -> int:
    from reid_core.data.phantom import write_phantom_dataset

    out = write_phantom_dataset(args.out, n_patients=args.patients, seed=args.seed, size=args.size,
                                fmt=args.format, workers=args.workers)
    print(f"wrote phantom dataset ({args.patients} patients, {args.format}, {args.size} px) to {out}")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from reid_core.prepare import prepare_workspace

    options: dict = {}
    if args.dataset == "phantom":
        options.update(patients=args.patients, seed=args.seed)
    if args.dataset == "csv":
        if not args.csv:
            raise CxrReidError("--dataset csv needs --csv FILE (and --csv-columns if the names differ)")
        options.update(csv_path=args.csv, **_parse_columns(args.csv_columns))
    summary = prepare_workspace(args.workspace, args.dataset, root=args.root, size=args.size,
                                workers=args.workers, frontal_only=not args.all_views,
                                progress=not args.quiet, **options)
    print(summary.describe())
    return 0


def _parse_columns(spec: str | None) -> dict[str, str]:
    """``path=File,patient_id=Subject`` → CsvAdapter keyword arguments."""
    mapping = {"path": "path_col", "patient_id": "patient_col", "study_order": "order_col",
               "study_date": "date_col", "view": "view_col", "sex": "sex_col", "age": "age_col",
               "findings": "findings_col", "image_id": "image_id_col"}
    out: dict[str, str] = {}
    for part in filter(None, (spec or "").split(",")):
        key, _, value = part.partition("=")
        if key.strip() not in mapping or not value:
            raise CxrReidError(f"--csv-columns: bad entry {part!r}; keys are {', '.join(mapping)}")
        out[mapping[key.strip()]] = value.strip()
    return out


def _cmd_status(args: argparse.Namespace) -> int:
    from reid_core.workspace import Workspace

    print(Workspace(args.workspace).format_status())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from reid_core.prepare import prepare_workspace
    from reid_core.workspace import Workspace

    summary = prepare_workspace(args.workspace, "phantom", size=args.size, patients=args.patients,
                                seed=args.seed, progress=True)
    print(summary.describe())
    print(Workspace(args.workspace).format_status())
    print("The browser app arrives with the app issue; this workspace is what it will open.")
    return 0


EXAMPLES = {
    "phantom": "example: cxr-reid phantom --out data/phantom --patients 200 --seed 0 --size 512 --format nih",
    "prepare": (
        "examples:\n"
        "  cxr-reid prepare --dataset nih --root /data/ChestX-ray14 --workspace ws/nih --size 256\n"
        "  cxr-reid prepare --dataset phantom --patients 400 --workspace ws/phantom --size 128\n"
        "  cxr-reid prepare --dataset csv --root /data/x --csv /data/x/meta.csv \\\n"
        "      --csv-columns path=File,patient_id=Subject,study_date=Date --workspace ws/x"
    ),
    "status": "example: cxr-reid status --workspace ws/nih",
    "demo": "example: cxr-reid demo   (builds workspaces/demo from the phantom)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxr-reid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, epilog=EXAMPLES[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("phantom", _cmd_phantom, "Write a synthetic phantom CXR dataset (ChestX-ray14 PNG layout or DICOM).")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--patients", type=int, default=200, help="number of synthetic patients (default 200)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--size", type=int, default=512, help="image size in pixels (default 512)")
    p.add_argument("--format", choices=("nih", "dicom"), default="nih", help="file layout (default nih)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")

    p = add("prepare", _cmd_prepare, "Index a dataset and decode it into a workspace's image store.")
    p.add_argument("--workspace", required=True, type=Path, help="workspace folder (created if missing)")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", type=Path, help="dataset root folder (not needed for phantom)")
    p.add_argument("--size", type=int, default=256, help="square image size in pixels (default 256)")
    p.add_argument("--workers", type=int, default=None, help="decode processes (default: all cores)")
    p.add_argument("--all-views", action="store_true", help="keep lateral views (default: frontal PA/AP only)")
    p.add_argument("--patients", type=int, default=200, help="phantom only: number of patients")
    p.add_argument("--seed", type=int, default=0, help="phantom only: generator seed")
    p.add_argument("--csv", type=Path, help="csv only: the metadata table")
    p.add_argument("--csv-columns", help="csv only: e.g. path=File,patient_id=Subject,study_date=Date")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("status", _cmd_status, "Show which artefacts a workspace has and how to build the rest.")
    p.add_argument("--workspace", required=True, type=Path)

    p = add("demo", _cmd_demo, "Build the demo workspace from the phantom (the app's default).")
    p.add_argument("--workspace", type=Path, default=DEMO_WORKSPACE)
    p.add_argument("--patients", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except CxrReidError as exc:
        print(f"cxr-reid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cxr-reid {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
