"""Fuzz the image loader: every file must load within the contract or raise ImageLoadError, in bounded time.

Inputs: pydicom's test corpora (``pydicom.data``: test files, charsets, palettes and
pydicom-data when installed), a zoo of hand-made raster and odd files written here
(sound and broken PNG / JPEG / TIFF / BMP, decompression-bomb headers, empty and
random files, a FIFO, a non-UTF-8 name), and seeded mutants of every corpus DICOM:
byte flips (anywhere, or in the second half where the pixel data usually is),
truncations, zeroed or duplicated chunks, and header values set to hostile ones
(rows 65535, NumberOfFrames "inf", BitsAllocated 64, WindowWidth "nan", ...).

Each file is loaded by :func:`reid_core.data.io.load_image` in a separate worker
process, so a hang (no answer within ``--timeout`` seconds) or a native crash is
counted instead of ending the run. Outcomes: ``ok`` (a finite float32 2-D array in
[0, 1]), ``typed`` (ImageLoadError), ``other`` (any other exception: a bug),
``contract`` (returned something else: a bug), ``crash`` and ``hang``. Prints the
counts and every case that is not ok or typed; exits 1 when there is one.

    OMP_NUM_THREADS=1 python scripts/fuzz_loaders.py              # the long run (make fuzz)
    python scripts/fuzz_loaders.py --quick                        # a few files, for the test suite
"""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import random
import struct
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dicom_corpus import corpus_files  # noqa: E402  (after the path insert)

HEADER_MUTATIONS = {  # keyword → hostile values (one is set per header mutant)
    "Rows": [0, 1, 65535], "Columns": [0, 1, 65535], "BitsAllocated": [1, 7, 12, 64], "BitsStored": [0, 40],
    "HighBit": [40], "SamplesPerPixel": [0, 2, 255], "PixelRepresentation": [1, 2],
    "NumberOfFrames": ["0", "-1", "1e9", "inf", "nan", "abc"], "PlanarConfiguration": [1, 5],
    "PhotometricInterpretation": ["", "YBR_FULL", "PALETTE COLOR", "XYZ"],
    "WindowCenter": ["nan", "1e308"], "WindowWidth": ["0", "-1", "nan", "inf"],
    "RescaleSlope": ["0", "nan", "inf", "1e308"], "RescaleIntercept": ["nan", "-1e308"],
}
BYTE_MUTATIONS = ("flip", "flip_tail", "truncate", "zero_chunk", "dup_chunk")


# ---------------------------------------------------------------------------- inputs
def _png(width: int, height: int, colour_type: int, payload: bytes = b"\0" * 4096) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(payload)) + chunk(b"IEND", b"")


def _saved(image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def write_zoo(folder: Path, rng: random.Random) -> list[Path]:
    """Sound and broken rasters and odd files."""
    from PIL import Image

    yy, xx = np.mgrid[0:96, 0:96]
    grey = ((np.sin(xx / 7) + np.cos(yy / 11)) * 60 + 128).clip(0, 255).astype(np.uint8)
    rgb = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    jpeg = _saved(Image.fromarray(grey), "JPEG", quality=90)
    sos = jpeg.index(b"\xff\xda")
    scan = sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big")
    sof = jpeg.index(b"\xff\xc0")
    items = {
        "grey8.png": _saved(Image.fromarray(grey), "PNG"),
        "grey16.png": _saved(Image.fromarray((grey.astype(np.uint16) * 16)), "PNG"),
        "rgb.png": _saved(Image.fromarray(rgb), "PNG"), "rgba.png": _saved(Image.fromarray(rgb).convert("RGBA"), "PNG"),
        "palette.png": _saved(Image.fromarray(rgb).convert("P"), "PNG"),
        "la.png": _saved(Image.fromarray(grey).convert("LA"), "PNG"),
        "bilevel.png": _saved(Image.fromarray(grey).convert("1"), "PNG"),
        "grey.jpg": jpeg, "colour.jpg": _saved(Image.fromarray(rgb), "JPEG"),
        "progressive.jpg": _saved(Image.fromarray(grey), "JPEG", progressive=True),
        "cmyk.jpg": _saved(Image.fromarray(rgb).convert("CMYK"), "JPEG"),
        "frames.tif": _saved(Image.fromarray(grey), "TIFF", save_all=True,
                             append_images=[Image.fromarray(255 - grey)]),
        "float.tif": _saved(Image.fromarray(grey.astype(np.float32) / 7), "TIFF"),
        "image.bmp": _saved(Image.fromarray(grey), "BMP"),
        "truncated.png": _saved(Image.fromarray(grey), "PNG")[:300],
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated_eoi.jpg": jpeg[: len(jpeg) * 2 // 3] + b"\xff\xd9",
        "flipped_scan.jpg": jpeg[:scan + 40] + bytes(b ^ 0x5A for b in jpeg[scan + 40:scan + 48]) + jpeg[scan + 48:],
        "enlarged_sof.jpg": jpeg[:sof + 5] + (192).to_bytes(2, "big") + jpeg[sof + 7:],
        "bomb_rgba.png": _png(10_000, 10_000, 6), "bomb_grey.png": _png(100_000, 100_000, 0),
        "empty.png": b"", "empty.dcm": b"", "random.png": rng.randbytes(2048), "random.jpg": rng.randbytes(2048),
        "random.dcm": rng.randbytes(2048), "text.dcm": b"not a dicom file\n" * 10,
        "preamble_only.dcm": b"\0" * 128 + b"DICM",
    }
    paths = []
    for name, data in items.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.dcm")
        paths.append(folder / "pipe.dcm")
    odd = os.fsencode(folder) + b"/caf\xe9.png"
    with open(odd, "wb") as fh:
        fh.write(items["grey8.png"])
    paths.append(Path(os.fsdecode(odd)))
    return paths


def byte_mutant(data: bytes, kind: str, rng: random.Random) -> bytes:
    """``data`` changed by one byte-level mutation (the 132-byte preamble kept, so it still reads as DICOM)."""
    start = min(132, len(data) - 1)
    out = bytearray(data)
    if kind in ("flip", "flip_tail"):
        lo = start if kind == "flip" else max(start, len(data) // 2)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(lo, len(data))
            out[i] ^= rng.randrange(1, 256)
        return bytes(out)
    if kind == "truncate":
        return bytes(out[: rng.randrange(start, len(data))])
    i = rng.randrange(start, len(data))
    n = min(rng.randint(1, 256), len(data) - i)
    if kind == "zero_chunk":
        out[i:i + n] = bytes(n)
        return bytes(out)
    return bytes(out[:i + n] + out[i:])  # dup_chunk


def header_mutant(path: Path, rng: random.Random) -> tuple[bytes, str] | None:
    """The file re-saved with one header value set to a hostile one; None if pydicom cannot read or write it."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
        keyword = rng.choice(sorted(HEADER_MUTATIONS))
        value = rng.choice(HEADER_MUTATIONS[keyword])
        setattr(ds, keyword, value)
        buf = io.BytesIO()
        ds.save_as(buf)
        return buf.getvalue(), f"{keyword}={value!r}"
    except Exception:  # noqa: BLE001 - a value pydicom itself refuses is no test case
        return None


# ---------------------------------------------------------------------------- isolated loading
def _outcome(path: str) -> tuple[str, str]:
    from reid_core.data.io import load_image
    from reid_core.errors import ImageLoadError

    try:
        img = load_image(path)
    except ImageLoadError as exc:
        return "typed", exc.reason[:100]
    except BaseException as exc:  # noqa: BLE001 - everything else is what the fuzzer looks for
        return "other", f"{type(exc).__name__}: {str(exc)[:150]}"
    good = (isinstance(img, np.ndarray) and img.dtype == np.float32 and img.ndim == 2 and img.size > 0
            and bool(np.isfinite(img).all()) and float(img.min()) >= 0.0 and float(img.max()) <= 1.0)
    return ("ok", f"{img.shape}") if good else ("contract", f"{getattr(img, 'dtype', type(img))} "
                                                         f"{getattr(img, 'shape', '')}")


def _serve(conn) -> None:
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.CRITICAL)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # decoder panics print Rust backtraces: the outcome says enough
    while True:
        path = conn.recv()
        if path is None:
            return
        conn.send(_outcome(path))


class Loader:
    """One worker process at a time; a hang or a crash costs the file and a restart."""

    def __init__(self, timeout: float) -> None:
        methods = mp.get_all_start_methods()
        self.ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        self.timeout = timeout
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()

    def _restart(self) -> None:
        self.proc.kill()
        self.proc.join()
        self._start()

    def load(self, path: Path) -> tuple[str, str]:
        self.conn.send(str(path))
        if not self.conn.poll(self.timeout):
            self._restart()
            return "hang", f"no answer within {self.timeout:g} s"
        try:
            return self.conn.recv()
        except EOFError:
            code = self.proc.exitcode
            self._restart()
            return "crash", f"worker died (exit code {code})"

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(5)


# ---------------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> int:
    warnings.simplefilter("ignore")  # pydicom warns about every hostile value it reads or writes
    rng = random.Random(args.seed)
    corpus = corpus_files()
    if args.quick:
        corpus = corpus[:: max(1, len(corpus) // 12)][:12]
    counts: dict[str, Counter] = {"corpus": Counter(), "zoo": Counter(), "mutants": Counter()}
    bad: list[str] = []
    t0 = time.perf_counter()
    loader = Loader(args.timeout)
    with tempfile.TemporaryDirectory(prefix="cxr-reid-fuzz-") as tmp:
        tmp_path = Path(tmp)
        zoo_dir = tmp_path / "zoo"
        zoo_dir.mkdir()

        def check(group: str, path: Path, label: str) -> None:
            kind, detail = loader.load(path)
            counts[group][kind] += 1
            if kind not in ("ok", "typed"):
                bad.append(f"{kind:8s} {label}: {detail}")

        for p in corpus:
            check("corpus", p, p.name)
        for p in write_zoo(zoo_dir, rng):
            check("zoo", p, f"zoo/{os.fsencode(p.name)!r}")
        mutant = tmp_path / "mutant.dcm"
        dicoms = [p for p in corpus if p.stat().st_size > 132 and p.read_bytes()[128:132] == b"DICM"]
        for p in dicoms:
            data = p.read_bytes()
            for k in range(args.mutants_per_file):
                if k % 3 == 2 and (made := header_mutant(p, rng)) is not None:
                    blob, what = made
                else:
                    what = rng.choice(BYTE_MUTATIONS)
                    blob = byte_mutant(data, what, rng)
                mutant.write_bytes(blob)
                check("mutants", mutant, f"{p.name} [{what}, mutant {k}]")
    loader.close()
    wall = time.perf_counter() - t0
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() + children.ru_utime + children.ru_stime
    total = sum(counts.values(), Counter())
    tried = sum(total.values())
    print(f"files tried: {tried} (corpus {sum(counts['corpus'].values())}, zoo {sum(counts['zoo'].values())}, "
          f"DICOM mutants {sum(counts['mutants'].values())} of {len(dicoms)} corpus DICOMs)")
    for kind, label in (("ok", "loaded within the contract"), ("typed", "typed errors (ImageLoadError)"),
                        ("other", "other exceptions"), ("contract", "contract violations"),
                        ("crash", "crashes (worker died)"), ("hang", f"hangs (> {args.timeout:g} s)")):
        print(f"  {label:32s} {total[kind]:6d}")
    print(f"wall time: {wall:.1f} s, CPU time {cpu:.1f} s (seed {args.seed}, {args.mutants_per_file} mutants "
          f"per DICOM, one worker process)")
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mutants-per-file", type=int, default=20, help="mutants of each corpus DICOM (default 20)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before a load counts as a hang")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="12 corpus files, for the test suite")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
