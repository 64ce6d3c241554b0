"""prepare: letterbox, parallel decode, resume after interruption, bad files, crashing decoders."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reid_core.data.cache import DONE, FAILED, TODO, letterbox, prepare_images
from reid_core.data.sources import FileSource
from reid_core.data.store import ImageStore
from reid_core.errors import ImageLoadError, WorkspaceError


@dataclass(frozen=True)
class GradientSource:
    """A picklable synthetic source: image i is a ramp with brightness i/n; some rows misbehave."""

    n: int
    fail: tuple[int, ...] = ()
    crash: tuple[int, ...] = ()
    interrupt_at: int = -1

    def load(self, row: Mapping[str, object]) -> np.ndarray:
        i = int(row["i"])
        if i == self.interrupt_at:
            raise KeyboardInterrupt
        if i in self.fail:
            raise ImageLoadError(str(row["path"]), "synthetic failure")
        if i in self.crash:
            os._exit(3)  # a decoder that takes its whole process down
        h, w = 40 + i % 5, 60
        return np.linspace(0, 1, h * w, dtype=np.float32).reshape(h, w) * (i + 1) / self.n


def _manifest(n: int) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"im{i}" for i in range(n)], "path": [f"f{i}.png" for i in range(n)],
                         "i": range(n)})


def test_letterbox_keeps_aspect_and_pads_black():
    img = np.ones((100, 50), np.float32)
    out = letterbox(img, 64)
    assert out.shape == (64, 64) and out.dtype == np.uint8
    cols = np.flatnonzero(out.max(axis=0))
    assert out[:, :16].max() == 0 and out[:, -16:].max() == 0  # 32 px wide content centred
    assert cols.min() == 16 and cols.max() == 47 and out[:, 20].min() == 255
    with pytest.raises(ValueError):
        letterbox(np.zeros((0, 5), np.float32), 8)


def test_letterbox_is_antialiased():
    checker = (np.indices((256, 256)).sum(0) % 2).astype(np.float32)
    out = letterbox(checker, 32)
    assert abs(out.astype(float).mean() - 127.5) < 3 and out.std() < 5  # averaged, not aliased


def test_serial_and_parallel_stores_are_identical(tmp_path):
    m = _manifest(70)
    a = prepare_images(m, GradientSource(70), tmp_path / "a" / "images_32.npy", 32, workers=1, progress=False)
    b = prepare_images(m, GradientSource(70), tmp_path / "b" / "images_32.npy", 32, workers=2, chunk_size=8,
                       progress=False)
    assert a.n_new == b.n_new == 70 and a.failures.empty
    np.testing.assert_array_equal(ImageStore(a.store_path)[:], ImageStore(b.store_path)[:])
    assert ImageStore(a.store_path)[69].max() > 240 and ImageStore(a.store_path)[0].max() < 10


def test_interrupted_run_resumes_without_redoing_work(tmp_path):
    m = _manifest(50)
    path = tmp_path / "images_32.npy"
    with pytest.raises(KeyboardInterrupt):
        prepare_images(m, GradientSource(50, interrupt_at=37), path, 32, workers=1, chunk_size=4, progress=False)
    status = np.load(path.with_suffix(".status.npy"))
    assert (status[:36] == DONE).all() and (status[36:] == TODO).all()
    with pytest.raises(WorkspaceError, match="incomplete"):
        ImageStore(path)
    res = prepare_images(m, GradientSource(50), path, 32, workers=1, chunk_size=4, progress=False)
    assert res.n_skipped == 36 and res.n_new == 14
    fresh = prepare_images(m, GradientSource(50), tmp_path / "f" / "images_32.npy", 32, workers=1, progress=False)
    np.testing.assert_array_equal(ImageStore(path)[:], ImageStore(fresh.store_path)[:])
    again = prepare_images(m, GradientSource(50), path, 32, workers=1, progress=False)
    assert again.n_new == 0 and again.n_skipped == 50


def test_changed_manifest_rebuilds_store(tmp_path):
    path = tmp_path / "images_32.npy"
    prepare_images(_manifest(10), GradientSource(10), path, 32, workers=1, progress=False)
    res = prepare_images(_manifest(12), GradientSource(12), path, 32, workers=1, progress=False)
    assert res.n_new == 12 and len(ImageStore(path)) == 12


@pytest.mark.parametrize("n, bad, kind, workers, chunk_size", [
    (100, 13, "fail", 2, 32),  # a decoder error: reported, the job finishes
    (40, 21, "crash", 2, 8),  # a native crash in a worker
    (12, 5, "crash", 1, 4),  # workers=1 decodes in a worker process too: a crash must not take prepare down
])
def test_a_failing_or_crashing_decoder_costs_only_its_image(tmp_path, n, bad, kind, workers, chunk_size):
    m = _manifest(n)
    res = prepare_images(m, GradientSource(n, **{kind: (bad,)}), tmp_path / "images_32.npy", 32, workers=workers,
                         chunk_size=chunk_size, progress=False)
    assert res.failures["path"].tolist() == [f"f{bad}.png"]
    reason = res.failures["reason"].iloc[0]
    assert reason == "synthetic failure" if kind == "fail" else "crashed" in reason
    status = np.load(tmp_path / "images_32.status.npy")
    assert status[bad] == FAILED and (np.delete(status, bad) == DONE).all()
    ref = prepare_images(m.drop(index=bad), GradientSource(n), tmp_path / "r" / "images_32.npy", 32, workers=1,
                         progress=False)
    np.testing.assert_array_equal(np.delete(ImageStore(res.store_path)[:], bad, axis=0), ImageStore(ref.store_path)[:])


def test_real_files_with_one_corrupt(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        arr = rng.integers(0, 255, size=(30 + i, 40), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
        rows.append({"image_id": str(i), "path": f"{i}.png"})
    (tmp_path / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    res = prepare_images(pd.DataFrame(rows), FileSource(str(tmp_path)), tmp_path / "ws" / "images_16.npy", 16,
                         workers=2, progress=False)
    assert res.failures["path"].tolist() == ["5.png"]
    assert ImageStore(res.store_path)[4].any()
