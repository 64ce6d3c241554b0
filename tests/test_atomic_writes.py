"""Atomic writes: unique temp names, no torn files under concurrent writers, leftovers cleaned, torn index pairs refused."""
from __future__ import annotations

import multiprocessing as mp
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from reid_core.atomic import STALE_AFTER_S, atomic_path, write_text_atomic
from reid_core.embed import EmbeddingTable
from reid_core.errors import WorkspaceError
from reid_core.retrieval import Index

ROOT = Path(__file__).resolve().parents[1]


def test_two_writers_of_one_target_get_different_temp_files(tmp_path):
    target = tmp_path / "embeddings.npz"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b and a.parent == b.parent == tmp_path and a.suffix == ".npz"
        a.write_text("first")
        b.write_text("second")
    assert target.read_text() == "first"  # the outer context finished last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.npz"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = write_text_atomic(tmp_path / "report.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_leftovers_of_a_dead_writer_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "verifier.json"
    stale, young = tmp_path / ".verifier.json.0123456789ab.tmp.json", tmp_path / ".verifier.json.ba9876543210.tmp.json"
    for p in (stale, young):
        p.write_text("{")
    old = time.time() - STALE_AFTER_S - 60
    os.utime(stale, (old, old))
    write_text_atomic(target, "{}")
    assert not stale.exists() and young.exists()  # a young temp may belong to a writer still at work


def _write_many(path: str, value: float, n: int) -> None:
    table = EmbeddingTable(np.full((2000, 128), value, np.float32), [f"i{k}" for k in range(2000)])
    for _ in range(n):
        table.save(path)


def test_concurrent_saves_never_show_a_reader_a_torn_table(tmp_path):
    path = tmp_path / "embeddings.npz"
    _write_many(str(path), 1.0, 1)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    writers = [ctx.Process(target=_write_many, args=(str(path), v, 30)) for v in (1.0, 2.0)]
    for w in writers:
        w.start()
    seen = set()
    while any(w.is_alive() for w in writers):
        table = EmbeddingTable.load(path)  # a torn file would raise WorkspaceError here
        values = np.unique(table.embeddings)
        assert len(values) == 1 and len(table) == 2000
        seen.add(float(values[0]))
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert seen <= {1.0, 2.0}
    assert [p.name for p in tmp_path.iterdir()] == ["embeddings.npz"]


def test_an_index_file_from_another_write_is_refused(tmp_path):
    ids = [f"i{k}" for k in range(20)]
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        index = Index(8, "flat")
        index.add(rng.normal(size=(20, 8)).astype(np.float32), ids)
        index.save(tmp_path / name)
    (tmp_path / "a" / "index.faiss").write_bytes((tmp_path / "b" / "index.faiss").read_bytes())  # same size, ids
    with pytest.raises(WorkspaceError, match="not the index"):
        Index.load(tmp_path / "a")
    assert len(Index.load(tmp_path / "b")) == 20


def test_no_module_writes_through_a_fixed_temp_name():
    """Every temp name comes from reid_core.atomic (or the checkpoint writer's own random names)."""
    fixed = re.compile(r"""["'][^"'\n]*\.tmp["']""")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for base in ("reid_core", "gan") for p in (ROOT / base).rglob("*.py")
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if fixed.search(line) and p.name != "atomic.py" and "token_hex" not in line]
    assert not offenders, offenders
