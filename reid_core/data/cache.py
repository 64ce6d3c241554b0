"""``prepare``: parallel decode → letterbox resize → uint8 memory-mapped store.

Resumable and fault-tolerant: a per-row status array (0 = to do, 1 = done,
2 = failed) is flushed after each chunk, together with the pixels, so an
interrupted run continues where it stopped; a file that cannot be decoded is
recorded with its reason and the job goes on; a decoder that crashes its worker
process costs only that file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from reid_core.atomic import write_text_atomic
from reid_core.data.sources import ImageSource
from reid_core.errors import INTERRUPTS, ImageLoadError, WorkspaceError
from reid_core.jsonfile import read_json_object

log = logging.getLogger(__name__)

TODO, DONE, FAILED = 0, 1, 2


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a float [0,1] 2-D image to ``size``×``size`` uint8, keeping its aspect ratio.

    The longer side becomes ``size``; the shorter one is centred and padded with
    0 (black, like air or collimation). Downscaling is antialiased.
    """
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"letterbox needs a non-empty 2-D image, got shape {image.shape}")
    h, w = image.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
        image = np.asarray(pil.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0))
    out = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return out


@dataclass
class PrepareResult:
    """What a prepare run did: rows written now, rows already done, and the failures."""

    store_path: Path
    n_total: int
    n_new: int
    n_skipped: int
    failures: pd.DataFrame  # columns path, reason (all failures, including earlier runs)


def plan_fingerprint(manifest: pd.DataFrame, size: int, source_key: str = "") -> str:
    """A hash of what a store holds: ids and paths in order, the resolution and the source's ``store_key``.

    An empty ``source_key`` (every file source) leaves the hash as it always was.
    """
    head = f"size={size};n={len(manifest)}" + (f";source={source_key}" if source_key else "")
    h = hashlib.sha256(head.encode())
    for iid, path in zip(manifest["image_id"].astype(str), manifest["path"].astype(str)):
        h.update(f"\n{iid}\t{path}".encode())
    return h.hexdigest()


def _decode_chunk(source: ImageSource, rows: list[dict], indices: list[int], size: int):
    """Worker: decode + letterbox a chunk; failures come back as reasons, never raise."""
    images = np.zeros((len(rows), size, size), dtype=np.uint8)
    errors: list[tuple[int, str]] = []
    for k, row in enumerate(rows):
        try:
            images[k] = letterbox(source.load(row), size)
        except ImageLoadError as exc:
            errors.append((k, exc.reason))
        except BaseException as exc:  # noqa: BLE001 - one bad file must not stop 100k, nor a Rust panic
            if isinstance(exc, INTERRUPTS):
                raise
            errors.append((k, f"{type(exc).__name__}: {exc}"))
    return indices, images, errors


class _Store:
    """The writable side of a store: pixels, status and failure log, resumable."""

    def __init__(self, path: Path, n: int, size: int, fingerprint: str) -> None:
        self.path = path
        self.state_path = path.with_suffix(".state.json")
        self.status_path = path.with_suffix(".status.npy")
        self.errors_path = path.with_suffix(".errors.jsonl")
        state = self._read_state()
        fresh = state.get("fingerprint") != fingerprint or not path.exists() or not self.status_path.exists()
        if fresh:
            if state:
                log.info("image store %s was built from a different manifest or size; rebuilding", path)
            for p in (path, self.status_path, self.errors_path):
                p.unlink(missing_ok=True)
            self.images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size))
            self.status = np.lib.format.open_memmap(self.status_path, mode="w+", dtype=np.uint8, shape=(n,))
            self.state = {"fingerprint": fingerprint, "n": n, "size": size, "complete": False, "n_done": 0}
            self._write_state()
        else:
            self.images = np.load(path, mmap_mode="r+")
            self.status = np.load(self.status_path, mmap_mode="r+")
            self.state = state

    def _read_state(self) -> dict:
        try:
            return read_json_object(self.state_path)
        except WorkspaceError:
            return {}

    def _write_state(self) -> None:
        write_text_atomic(self.state_path, json.dumps(self.state, indent=2, sort_keys=True), fsync=False)

    def write(self, indices: Sequence[int], images: np.ndarray, errors: list[tuple[int, str]], paths: Sequence[str]):
        idx = np.asarray(indices)
        self.images[idx] = images
        failed = {k for k, _ in errors}
        if errors:
            self._end_torn_line()
            with self.errors_path.open("a") as fh:
                for k, reason in errors:
                    fh.write(json.dumps({"row": int(idx[k]), "path": paths[k], "reason": reason}) + "\n")
        self.images.flush()  # pixels reach the disk before their status says done
        self.status[idx] = [FAILED if k in failed else DONE for k in range(len(idx))]
        self.status.flush()

    def _end_torn_line(self) -> None:
        """A run killed mid-write can leave a last line without its newline: end it before appending."""
        try:
            with self.errors_path.open("rb") as fh:
                fh.seek(-1, 2)
                torn = fh.read(1) != b"\n"
        except OSError:  # missing or empty
            return
        if torn:
            with self.errors_path.open("ab") as fh:
                fh.write(b"\n")

    def failures(self) -> pd.DataFrame:
        """One record per failed row (columns row, path, reason); ``path`` is None where the log lost it."""
        rows: dict[int, dict] = {}
        if self.errors_path.exists():
            for line in self.errors_path.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                    rows[int(rec["row"])] = {"row": int(rec["row"]), "path": rec["path"], "reason": rec["reason"]}
                except (ValueError, KeyError, TypeError):  # a torn or garbled line (a killed run): skip it
                    continue
        recs = [rows.get(r, {"row": r, "path": None, "reason": "failed in an earlier run (its log line was lost)"})
                for r in np.flatnonzero(self.status == FAILED).tolist()]
        return pd.DataFrame(recs, columns=["row", "path", "reason"])

    def finish(self) -> None:
        self.state["n_done"] = int((self.status != TODO).sum())
        self.state["complete"] = bool((self.status != TODO).all())
        self._write_state()


def prepare_images(
    manifest: pd.DataFrame,
    source: ImageSource,
    store_path: str | Path,
    size: int,
    workers: int | None = None,
    chunk_size: int = 32,
    progress: bool = True,
) -> PrepareResult:
    """Decode every manifest row into ``store_path`` (row i ↔ manifest row i); resume if possible.

    A source whose rows render differently under the same ids and paths (the hard
    phantom) has a ``store_key``; a store written under another key starts over.
    """
    if size < 16 or size > 4096:
        raise ValueError(f"size must be between 16 and 4096 px, got {size}")
    store_path = Path(store_path)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    n = len(manifest)
    store = _Store(store_path, n, size, plan_fingerprint(manifest, size, str(getattr(source, "store_key", ""))))
    todo = np.flatnonzero(store.status == TODO)
    n_skipped = n - len(todo)
    records = manifest.to_dict("records")
    chunks = [todo[i:i + chunk_size].tolist() for i in range(0, len(todo), chunk_size)]
    workers = max(1, workers if workers is not None else (mp.cpu_count() or 1))
    bar = tqdm(total=n, initial=n_skipped, desc=f"prepare {size}px", unit="img", disable=not progress)
    try:
        for indices, images, errors in _run_chunks(source, records, chunks, size, workers):
            store.write(indices, images, errors, [str(records[i]["path"]) for i in indices])
            bar.update(len(indices))
            if errors:
                bar.set_postfix(failed=int((store.status == FAILED).sum()))
    finally:
        bar.close()
        store.finish()
    failures = store.failures()
    lost = failures["path"].isna()
    failures.loc[lost, "path"] = [str(records[r]["path"]) for r in failures.loc[lost, "row"]]
    return PrepareResult(store_path, n, len(todo), n_skipped, failures[["path", "reason"]])


def _die_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: end with the process that runs ``prepare``, even when it is SIGKILLed.

    On Linux the kernel sends the worker SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so a
    killed ``prepare`` leaves no orphaned decoders behind; a parent already gone ends the worker at once.
    Elsewhere this does nothing (workers then end when they next find the pool closed).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def _run_chunks(source: ImageSource, records: list[dict], chunks: list[list[int]], size: int,
                workers: int) -> Iterator[tuple[list[int], np.ndarray, list[tuple[int, str]]]]:
    """Yield decoded chunks from a process pool that survives crashing decoders.

    Decoding always runs in worker processes, even for ``workers=1``: a native
    crash (a segfault in a codec, a Rust abort) then kills a worker, never the
    run. If a worker dies, the chunks in flight are re-run one image per task;
    an image that kills its worker again is marked failed with reason "decoder
    crashed". Chunks finishing together are handled in plan order, so an
    interrupt leaves a prefix of the plan done.
    """
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pending: list[tuple[list[int], bool]] = [(c, False) for c in chunks]  # (indices, isolated)
    pending.reverse()
    while pending:
        broken: list[tuple[list[int], bool]] = []
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            inflight: dict[Future, tuple[list[int], bool]] = {}
            while pending or inflight:
                # isolated (single-image) retries run alone, so a crash names its image
                while pending and len(inflight) < (1 if pending[-1][1] else workers * 3):
                    idx, iso = pending.pop()
                    fut = pool.submit(_decode_chunk, source, [records[i] for i in idx], idx, size)
                    inflight[fut] = (idx, iso)
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: inflight[f][0][0]):
                    task = inflight.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken.append(task)
                if broken:
                    broken.extend(inflight.values())
                    break
        for idx, iso in sorted(broken, key=lambda t: t[0][0], reverse=True):
            if iso:  # this single image crashed its worker twice over
                yield idx, np.zeros((1, size, size), np.uint8), [(0, "decoder crashed (worker process died)")]
            else:
                pending.extend(([i], True) for i in reversed(idx))
