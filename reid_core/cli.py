"""The ``cxr-reid`` command line: build a workspace step by step.

Each subcommand is resumable and skips work already done; ``--help`` on any of
them shows an example. Packages above ``reid_core`` add their own subcommands
through the ``cxr_reid.commands`` entry-point group (``gan`` adds the generator's):
this module never imports them.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import logging
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence


from reid_core.demo import DEMO_PATIENTS, DEMO_SEED
from reid_core.errors import CxrReidError
from reid_core.hard_pairs import PAIR_KINDS
from reid_core.holdout import IMAGES_CHOICES
from reid_core.data.phantom.difficulty import DIFFICULTIES
from reid_core.prepare import DATASETS
from reid_core.train.cli import add_train_arguments, run_train_command

DEMO_WORKSPACE = Path("workspaces/demo")

log = logging.getLogger("cxr_reid")


def _cmd_phantom(args: argparse.Namespace) -> int:
    from reid_core.data.phantom import write_phantom_dataset

    out = write_phantom_dataset(args.out, n_patients=args.patients, seed=args.seed, size=args.size,
                                fmt=args.format, workers=args.workers, difficulty=args.difficulty)
    hard = ", hard" if args.difficulty == "hard" else ""
    print(f"wrote phantom dataset ({args.patients} patients, {args.format}, {args.size} px{hard}) to {out}")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from reid_core.prepare import prepare_workspace

    options: dict = {}
    if args.dataset == "phantom":
        options.update(patients=args.patients, seed=args.seed)
        if args.difficulty != "standard":  # recorded in workspace.json, so later loads render the same films
            options.update(difficulty=args.difficulty)
    if args.dataset == "csv":
        if not args.csv:
            raise CxrReidError("--dataset csv needs --csv FILE (and --csv-columns if the names differ)")
        options.update(csv_path=args.csv, **_parse_columns(args.csv_columns))
    summary = prepare_workspace(args.workspace, args.dataset, root=args.root, size=args.size,
                                workers=args.workers, frontal_only=not args.all_views,
                                progress=not args.quiet, real_dates=args.real_dates,
                                keep_mapping=args.keep_mapping, **options)
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
    from reid_core.demo import build_demo_workspace

    build = build_demo_workspace(args.workspace, patients=args.patients, seed=args.seed, size=args.size,
                                 progress=True)
    print(build.describe())
    print(build.workspace.format_status())
    if args.no_serve:
        return 0
    app = Path(__file__).resolve().parents[1] / "app.py"
    if not app.exists():
        raise CxrReidError(f"app.py not found next to the package ({app}); run the app from a source checkout")
    print(f"starting the app on http://{args.host}:{args.port} (Ctrl-C to stop)"
          + ("" if args.host in ("127.0.0.1", "localhost") else
             "; it listens beyond this machine and serves patient images to anyone who reaches the port"))
    return subprocess.call(streamlit_command(app, args.host, args.port))


def streamlit_command(app: Path, host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line ``cxr-reid demo`` starts: bound to ``host`` only."""
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
            "--server.address", host, "--server.port", str(port), "--browser.gatherUsageStats", "false"]


def _cmd_ship(args: argparse.Namespace) -> int:
    from reid_core.shipping import ship_embedder

    result = ship_embedder(args.workspace, args.out, notes=args.notes or "")
    print(f"wrote {result.out} ({result.dtype}; fp16 max |Δembedding| {result.fp16_max_abs_diff:.1e}, "
          f"test P@1 {result.p_at_1_fp32:.3f} → {result.p_at_1_stored:.3f}) with MODEL_CARD.md")
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from reid_core.embed import embed_workspace

    table = embed_workspace(args.workspace, batch_size=args.batch_size, device=args.device, force=args.force)
    print(f"embeddings: {len(table)} × {table.dim} in {args.workspace / 'embeddings.npz'} (+ index.faiss)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from reid_core.evaluate import evaluate_workspace

    if args.dims:
        from reid_core.sweep import dimension_sweep
        from reid_core.train.cli import config_from_args

        dims = [int(d) for d in args.dims.split(",") if d.strip()]
        table = dimension_sweep(args.workspace, dims, config_from_args(args), n_boot=min(args.n_boot, 200))
        print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        return 0
    sizes = tuple(int(x) for x in args.gallery_sizes.split(",") if x.strip())
    report = evaluate_workspace(args.workspace, n_boot=args.n_boot, seed=args.seed, out=args.out, images=args.images,
                                verifier_pairs=args.verifier_pairs, gallery_sizes=sizes)
    r, v, ev = report["retrieval"], report["verification"], report["evaluation_set"]
    print(f"evaluated {ev['n_images']} images of {ev['n_patients']} patients ({ev['mode']}): {ev['reason']}")
    print(f"P@1 {_num(r['precision_at_1'])}  mAP@R {_num(r['map_at_r'])}  R-precision {_num(r['r_precision'])}")
    print(f"verification AUC {_num(v['auc'])}  F1 {_num(v['f1'])}  distance threshold {_num(v['threshold'])}"
          + ("" if v["threshold"] is not None else " (distance does not separate pairs: p never crosses 0.5)"))
    for g in report["identification"]["galleries"]:
        if "skipped" in g:
            print(f"1:N gallery {g['gallery_size']}: skipped ({g['skipped']})")
            continue
        rates = "  ".join(f"FNIR {_num(p.get('fnir'))} at FPIR {p['fpir_target']:g}" for p in g["fnir_at_fpir"])
        print(f"1:N gallery {g['gallery_size']}: rank-1 {_num(g['rank1'])}  {rates}")
    hard = report["calibration"]["hardest_negative"]
    print(f"p_same ECE on search results {_num(report['calibration']['search_results']['ece'])}; "
          f"nearest other-patient films called same: {_num(hard.get('called_same'))}")
    if "baseline" in report:
        print(f"pixel baseline P@1 {_num(report['baseline']['retrieval']['precision_at_1'])}")
    print(f"wrote {args.out or args.workspace / 'report.json'}")
    return 0


def _num(value: float | None) -> str:
    """A metric for printing; report.json stores undefined values as null."""
    return "n/a" if value is None else f"{value:.4f}"


def _load_model_and_verifier(ws_path: Path):
    from reid_core.checkpoint import load_embedder
    from reid_core.verify import PairVerifier
    from reid_core.workspace import Workspace

    ws = Workspace(ws_path)
    model = load_embedder(ws.embedder_dir)
    verifier = PairVerifier.load(ws.verifier_path) if ws.verifier_path.exists() else None
    if verifier is not None and not verifier.is_informative:
        print(f"warning: {ws.verifier_path.name}'s same-patient probability does not fall with distance (an "
              "undertrained embedder?): its probabilities and decisions are not meaningful. Train longer, then "
              "re-run `cxr-reid embed` and `cxr-reid evaluate`.", file=sys.stderr)
    return ws, model, verifier


def _cmd_verify(args: argparse.Namespace) -> int:
    from reid_core.query import embed_query_images, load_query_image

    ws, model, verifier = _load_model_and_verifier(args.workspace)
    if verifier is None:
        raise CxrReidError(f"{ws.root} has no verifier.json; run `cxr-reid evaluate --workspace {ws.root}`")
    size = model.config.image_size
    a, b = embed_query_images(model, [load_query_image(args.a, size), load_query_image(args.b, size)])
    res = verifier.verify(a, b)
    print(f"distance {res.distance:.4f}  same-patient probability {res.probability:.4f}  "
          f"decision: {'SAME patient' if res.same_patient else 'DIFFERENT patients'} (threshold {verifier.threshold})")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    import pandas as pd

    from reid_core.data.manifest import load_manifest
    from reid_core.query import embed_query_images, load_query_image
    from reid_core.retrieval import Index
    from reid_core.ui.dates import calendar_dates_shown, with_study_days

    ws, model, verifier = _load_model_and_verifier(args.workspace)
    index = Index.load(ws.root)
    manifest = with_study_days(load_manifest(ws.manifest_path), calendar_dates_shown(ws)).set_index("image_id")
    if Path(args.query).exists():
        q = embed_query_images(model, [load_query_image(args.query, model.config.image_size)])
        dist, ids = index.search(q, args.k)
        dist, ids = dist[0], ids[0]
    else:
        dist, ids = index.search_id(args.query, args.k)
    shown = ["patient_id", "study_day"] + (["calendar_date"] if "calendar_date" in manifest else []) + \
        ["age", "sex", "view", "findings"]
    rows = manifest.loc[list(ids), shown].copy()
    rows.insert(0, "distance", dist)
    if verifier is not None:
        rows.insert(1, "p_same", verifier.predict_proba(dist))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(rows.reset_index().to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from reid_core.audit import audit_ids
    from reid_core.data.manifest import load_manifest
    from reid_core.embed import EmbeddingTable
    from reid_core.verify import PairVerifier
    from reid_core.workspace import Workspace

    ws = Workspace(args.workspace)
    manifest = load_manifest(ws.manifest_path)
    table = EmbeddingTable.load(ws.embeddings_path)
    emb = table.embeddings[table.rows_for(manifest["image_id"])]
    result = audit_ids(emb, manifest["image_id"].to_numpy(), manifest["patient_id"].to_numpy(),
                       PairVerifier.load(ws.verifier_path))
    out = ws.root / "audit"
    out.mkdir(exist_ok=True)
    result.mislabelled.to_csv(out / "likely_mislabelled.csv", index=False)
    result.same_person_pairs.to_csv(out / "same_person_pairs.csv", index=False)
    print(f"{len(result.mislabelled)} image(s) likely mislabelled, {len(result.same_person_pairs)} ID pair(s) "
          f"probably the same person; tables in {out}")
    return 0


def _cmd_shortcut_audit(args: argparse.Namespace) -> int:
    import json
    import time

    from reid_core.atomic import write_text_atomic
    from reid_core.checkpoint import load_embedder, weights_sha256
    from reid_core.data.phantom.generator import PhantomGenerator
    from reid_core.shortcut_audit import audit_report, markdown_table, shortcut_audit

    t0 = time.perf_counter()
    gen = PhantomGenerator(seed=args.seed, size=args.size, difficulty=args.difficulty)
    models = {str(c): load_embedder(c) for c in args.checkpoint}
    facts = {str(c): {"checkpoint": str(c), "image_size": m.config.image_size, "weights_sha256": weights_sha256(c)}
             for c, m in zip(args.checkpoint, models.values())}
    tables = shortcut_audit(gen, range(args.patients), models, n_boot=args.n_boot, seed=0,
                            batch_size=args.batch_size, device=args.device, progress=not args.quiet)
    wall = time.perf_counter() - t0
    settings = {"command": "cxr-reid " + " ".join(sys.argv[1:]), "phantom": gen.settings(),
                "patients": args.patients, "n_boot": args.n_boot, "wall_s": round(wall, 1)}
    write_text_atomic(args.out, json.dumps(audit_report(tables, settings, facts), indent=2, allow_nan=False))
    for name, table in tables.items():
        print(f"{name}:\n{markdown_table(table)}\n")
    print(f"wrote {args.out} ({wall:.0f} s)")
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
    "demo": "example: cxr-reid demo   (builds workspaces/demo from the phantom, then serves the app)",
    "train": "example: cxr-reid train --workspace ws/phantom --set epochs=20 --set model.embedding_dim=64",
    "embed": "example: cxr-reid embed --workspace ws/phantom --batch-size 128",
    "evaluate": ("examples:\n  cxr-reid evaluate --workspace ws/phantom --out ws/phantom/report.json\n"
                 "  cxr-reid evaluate --workspace ws/phantom --dims 4,8,16,32,64,128 --set epochs=20"),
    "verify": "example: cxr-reid verify --workspace ws/phantom a.dcm b.png",
    "search": "example: cxr-reid search --workspace ws/phantom query.dcm -k 10   (or an image id of the workspace)",
    "audit": "example: cxr-reid audit --workspace ws/phantom",
    "ship": "example: cxr-reid ship --workspace ws/phantom1500 --out checkpoints/embedder",
    "shortcut-audit": ("example: cxr-reid shortcut-audit --checkpoint checkpoints/embedder checkpoints/judge "
                       "--seed 1 --patients 200 --out shortcut_audit.json"),
}


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer within [low, high] (argparse then prints usage and the reason, no traceback)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{value} is out of range: give {low}–{high}" if high is not None
                else f"{value} is too small: give {low} or more")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxr-reid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str,
            example: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, epilog=example or EXAMPLES.get(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("phantom", _cmd_phantom, "Write a synthetic phantom CXR dataset (ChestX-ray14 PNG layout or DICOM).")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--patients", type=int, default=200, help="number of synthetic patients (default 200)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--size", type=int, default=512, help="image size in pixels (default 512)")
    p.add_argument("--format", choices=("nih", "dicom"), default="nih", help="file layout (default nih)")
    p.add_argument("--difficulty", choices=DIFFICULTIES, default="standard",
                   help="standard, or hard: look-alike patients, wide acquisition nuisance (default standard)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")

    p = add("prepare", _cmd_prepare, "Index a dataset and decode it into a workspace's image store.")
    p.add_argument("--workspace", required=True, type=Path, help="workspace folder (created if missing)")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", type=Path, help="dataset root folder (not needed for phantom)")
    p.add_argument("--size", type=_int_in(16, 4096), default=256, help="square image size in pixels, 16–4096 "
                   "(default 256)")
    p.add_argument("--workers", type=int, default=None, help="decode processes (default: all cores)")
    p.add_argument("--all-views", action="store_true", help="keep lateral views (default: frontal PA/AP only)")
    p.add_argument("--patients", type=int, default=200, help="phantom only: number of patients")
    p.add_argument("--seed", type=int, default=0, help="phantom only: generator seed")
    p.add_argument("--difficulty", choices=DIFFICULTIES, default="standard",
                   help="phantom only: standard, or hard (look-alike patients, wide acquisition nuisance)")
    p.add_argument("--csv", type=Path, help="csv only: the metadata table")
    p.add_argument("--csv-columns", help="csv only: e.g. path=File,patient_id=Subject,study_date=Date")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--real-dates", action="store_true",
                   help="keep and show calendar study dates (default: shown as days from each patient's first "
                        "study; a DICOM folder's dates are also stored moved so each first study is day 0)")
    p.add_argument("--keep-mapping", action="store_true",
                   help="dicom only: write pseudonyms.csv mapping the pseudonyms back to PatientIDs and SOP UIDs")

    p = add("ship", _cmd_ship, "Export an evaluated workspace's embedder (fp16 when lossless) with a model card.")
    p.add_argument("--workspace", required=True, type=Path, help="trained, embedded and evaluated workspace")
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder, e.g. checkpoints/embedder")
    p.add_argument("--notes", help="free text for the card's Notes section")

    p = add("status", _cmd_status, "Show which artefacts a workspace has and how to build the rest.")
    p.add_argument("--workspace", required=True, type=Path)

    p = add("demo", _cmd_demo, "Build the demo workspace from the phantom and open the app on it.")
    p.add_argument("--workspace", type=Path, default=DEMO_WORKSPACE)
    p.add_argument("--patients", type=int, default=DEMO_PATIENTS, help="phantom patients (default %(default)s)")
    p.add_argument("--seed", type=int, default=DEMO_SEED,
                   help="phantom seed (default %(default)s: people the shipped models never saw)")
    p.add_argument("--size", type=int, default=None,
                   help="image store side in px (default: the shipped embedder's training size, else 128)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the app "
                        "and its patient images to the network, deliberately)")
    p.add_argument("--no-serve", action="store_true", help="build the workspace only")
    p = add("train", _cmd_train, "Train the identity embedder on the workspace (resumable).")
    add_train_arguments(p)

    p = add("embed", _cmd_embed, "Embed every workspace image (embeddings.npz + index.faiss).")
    p.add_argument("--workspace", required=True, type=Path)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    p.add_argument("--force", action="store_true", help="re-embed even if up to date")

    p = add("evaluate", _cmd_evaluate, "Evaluate retrieval, verification, calibration and 1:N identification on "
                                       "the held-out images (report.json).")
    p.add_argument("--workspace", required=True, type=Path)
    p.add_argument("--images", choices=IMAGES_CHOICES, default="auto",
                   help="auto: every image when the embedder never saw this workspace (its card.json names another "
                        "dataset or phantom seed), else the test split; all; test")
    p.add_argument("--verifier-pairs", choices=PAIR_KINDS, default="neighbours",
                   help="fit p_same on each film's 10 nearest films (calibrated on search results) or on random pairs")
    p.add_argument("--gallery-sizes", default="100,1000,10000",
                   help="1:N gallery sizes in enrolled patients (sizes the data cannot fill are skipped)")
    p.add_argument("--out", type=Path, help="report path (default: WORKSPACE/report.json)")
    p.add_argument("--n-boot", type=_int_in(0), default=1000, help="bootstrap replicates for the CIs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dims", help="dimension sweep instead: train and evaluate one embedder per dimension, "
                                  "e.g. 4,8,16,32,64,128 (training options from --config/--set)")
    p.add_argument("--config", type=Path, help="with --dims: TrainConfig JSON")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="with --dims: training override (repeatable)")

    p = add("verify", _cmd_verify, "Are two radiographs (DICOM/PNG/JPG) of the same patient?")
    p.add_argument("--workspace", required=True, type=Path)
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)

    p = add("search", _cmd_search, "The k most similar workspace images to a query file or image id.")
    p.add_argument("--workspace", required=True, type=Path)
    p.add_argument("query", help="a DICOM/PNG/JPG path, or an image id of the workspace")
    p.add_argument("-k", type=_int_in(1), default=10, help="neighbours to show (default 10)")

    p = add("audit", _cmd_audit, "Flag images whose embedding contradicts their patient ID, and duplicate IDs.")
    p.add_argument("--workspace", required=True, type=Path)

    p = add("shortcut-audit", _cmd_shortcut_audit, "P@1 of embedders on phantom films with marks, devices or "
                                                   "findings removed, or one acquisition factor pinned.")
    p.add_argument("--checkpoint", required=True, type=Path, nargs="+", help="embedder checkpoint folder(s)")
    p.add_argument("--seed", type=int, default=DEMO_SEED,
                   help="phantom seed (default %(default)s: people the shipped models never saw)")
    p.add_argument("--patients", type=_int_in(2), default=DEMO_PATIENTS, help="phantom patients (default %(default)s)")
    p.add_argument("--size", type=_int_in(32, 4096), default=128,
                   help="film side in px, as the image store holds it (default %(default)s)")
    p.add_argument("--difficulty", choices=DIFFICULTIES, default="standard", help="phantom difficulty")
    p.add_argument("--n-boot", type=_int_in(0), default=1000, help="bootstrap replicates for the CIs")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu, auto, cuda …")
    p.add_argument("--out", required=True, type=Path, help="report JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    for register in plugin_commands():
        register(add)
    return parser


PLUGIN_GROUP = "cxr_reid.commands"


def plugin_commands() -> list[Callable[..., None]]:
    """The ``register(add)`` functions of installed packages that add subcommands (entry points of
    :data:`PLUGIN_GROUP`); one that fails to import is skipped with a warning naming it."""
    registers = []
    for ep in sorted(importlib.metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            registers.append(ep.load())
        except ImportError as exc:
            log.warning("cxr-reid: the %r commands (%s) are unavailable: %s", ep.name, ep.value, exc)
    return registers


def _cmd_train(args: argparse.Namespace) -> int:
    return run_train_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    # pydicom's own log lines can quote element values (possible PHI); our typed errors say what failed
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
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
