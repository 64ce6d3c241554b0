"""Run records: the JSONL training log and atomically written JSON files."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reid_core.atomic import write_text_atomic
from reid_core.jsonfile import json_safe


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON via a temp file + ``os.replace`` (never a half-written file)."""
    write_text_atomic(path, json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False))


class JsonlLog:
    """Append-only ``train_log.jsonl``: one JSON object per line, flushed at once. Disabled: a no-op."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def start(self, resume_step: int | None) -> None:
        """A fresh log (``resume_step`` None), or the old one without records past ``resume_step``.

        Records written after the last saved resume state describe steps that
        will be trained again; dropping them keeps the log free of duplicates.
        """
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        if resume_step is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except (ValueError, AttributeError):
                    continue  # a torn last line from a crash
        write_text_atomic(self.path, "".join(k + "\n" for k in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(json_safe(record), allow_nan=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSONL log (skipping a torn last line)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
