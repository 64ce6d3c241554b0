"""The shared step loop (reid_core.train.run_loop): when its hooks fire, how it ends, and exact resume of every
trainer through it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import pytest
import torch

import reid_core  # noqa: F401  (before timm)
from reid_core.train.generations import load_newest_state
from reid_core.train.run_loop import LoopTrainer, Schedule, crossed, run_loop
from reid_core.train.runlog import read_jsonl
from exact_compare import assert_same
from trainer_cases import RESUME_CASES


@dataclass
class _Clock:
    elapsed_s: float = 0.0
    train_time_s: float = 0.0


class FakeTrainer(LoopTrainer):
    """Counts steps; records every hook as ``(hook, position)``; evaluation can end the run early."""

    def __init__(self, total: int, stop_early_at: int | None = None) -> None:
        self.progress, self.images_per_step, self.device = _Clock(), 4, torch.device("cpu")
        self.total, self.stop_early_at, self.pos, self.stopped_early = total, stop_early_at, 0, False
        self.events: list[tuple[str, int]] = []
        self.closed = False

    def position(self) -> int:
        return self.pos

    def finished(self) -> bool:
        return self.stopped_early or self.pos >= self.total

    def batches(self) -> Iterator[int]:
        try:
            while True:
                yield self.pos
        finally:
            self.closed = True

    def step(self, batch: Any) -> dict[str, torch.Tensor]:
        assert batch == self.pos
        self.pos += 1
        return {"loss": torch.tensor(float(self.pos))}

    def log(self, stats: dict[str, float]) -> dict[str, str]:
        self.events.append(("log", self.pos))
        self.last_stats = stats
        return {"loss": f"{stats['loss']:.1f}"}

    def evaluate(self) -> None:
        self.events.append(("evaluate", self.pos))
        self.stopped_early = self.stop_early_at is not None and self.pos >= self.stop_early_at

    def save(self) -> None:
        self.events.append(("save", self.pos))

    def at(self, hook: str) -> list[int]:
        return [pos for name, pos in self.events if name == hook]


def test_hooks_fire_on_their_multiples_and_at_the_end():
    trainer = FakeTrainer(total=7)
    schedule = Schedule("step", 7, log_every=2, save_every=3, evaluate_every=4)
    assert run_loop(trainer, schedule, desc="t", show_bar=False) == "finished"
    assert trainer.at("log") == [2, 4, 6, 7]
    assert trainer.at("evaluate") == [4, 7]
    assert trainer.at("save") == [3, 6, 7]
    assert trainer.events[-3:] == [("log", 7), ("evaluate", 7), ("save", 7)]  # log, then evaluate, then save
    assert trainer.last_stats["loss"] == 7.0 and trainer.last_stats["images_per_sec"] > 0  # a one-step window
    assert trainer.closed and 0 < trainer.progress.train_time_s <= trainer.progress.elapsed_s


def test_a_session_slice_logs_and_saves_where_it_ends():
    trainer = FakeTrainer(total=10)
    schedule = Schedule("step", 10, log_every=4, save_every=4, stop_after=3)
    assert run_loop(trainer, schedule, desc="t", show_bar=False) == "stopped"
    assert trainer.events == [("log", 3), ("save", 3)] and trainer.closed
    again = run_loop(trainer, Schedule("step", 10, log_every=4, save_every=4, stop_after=3), desc="t",
                     show_bar=False)
    assert again == "stopped" and trainer.at("save") == [3, 4, 6]  # the slice counts from where it starts


def test_a_slice_reaching_the_budget_is_finished():
    trainer = FakeTrainer(total=4)
    assert run_loop(trainer, Schedule("step", 4, 2, 2, stop_after=4), desc="t", show_bar=False) == "finished"


def test_early_stop_from_evaluation_saves_and_finishes():
    trainer = FakeTrainer(total=100, stop_early_at=6)
    assert run_loop(trainer, Schedule("step", 100, 5, 3, evaluate_every=3), desc="t", show_bar=False) == "finished"
    assert trainer.pos == 6 and trainer.at("evaluate") == [3, 6] and trainer.at("save") == [3, 6]


def test_a_stop_request_saves_then_raises_keyboard_interrupt():
    trainer = FakeTrainer(total=10)
    with pytest.raises(KeyboardInterrupt):
        run_loop(trainer, Schedule("step", 10, 5, 5), desc="t", show_bar=False, agree=lambda _: trainer.pos == 2)
    assert trainer.events == [("log", 2), ("save", 2)] and trainer.closed


def test_kimg_schedules_count_images():
    s = Schedule.in_kimg(0.028, 0.008, 0.0001, stop_after_kimg=0.012)
    assert (s.unit, s.total, s.log_every, s.save_every, s.stop_after) == ("kimg", 28, 8, 1, 12.0)
    assert s.shown(28) == pytest.approx(0.028) and Schedule("step", 5, 1, 1).shown(3) == 3
    assert crossed(7, 9, 8) and not crossed(8, 9, 8) and crossed(3, 4, 1)
    with pytest.raises(ValueError, match="log_every"):
        Schedule("step", 5, 0, 1)


# --------------------------------------------------------------------------- every trainer, sliced and resumed

@pytest.mark.parametrize("name", sorted(RESUME_CASES))
def test_every_trainer_resumes_bit_exactly_through_the_shared_loop(tmp_path, name):
    case = RESUME_CASES[name]()
    straight = case.workspace(tmp_path / "straight")
    assert case.train(straight, None).steps == case.steps
    sliced = case.workspace(tmp_path / "sliced")
    first = case.train(sliced, case.stop_after)
    assert not first.finished and first.steps == 3
    case.between(sliced)
    second = case.train(sliced, None)
    assert second.finished and second.resumed_from == 3 and second.steps == case.steps
    a, b = (load_newest_state(case.run_dir(ws) / "resume", "state") for ws in (straight, sliced))
    assert_same(a, b, "state", ignore={"elapsed_s", "train_time_s"})  # wall times aside, bit for bit
    logged = [r["step"] for r in read_jsonl(case.run_dir(sliced) / "train_log.jsonl") if r["event"] == case.log_event]
    assert logged == case.logged_steps  # the slice's end logs its window; nothing is written twice
