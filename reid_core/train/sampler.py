"""Deterministic patient batches: ``m`` images of each of ``P`` patients per batch.

Why not PML's ``MPerClassSampler``: it draws from the global ``random`` / numpy
RNGs inside ``__iter__``, so its order depends on everything else that touched
those RNGs, and there is no way to skip to "batch 731 of epoch 4" after an
interruption short of replaying the RNG history. Here an epoch's batches are a
pure function of ``(seed, epoch)``: resuming regenerates the epoch and skips the
batches already trained on; under DDP every rank computes the same global list
and takes its own slice, so no sampler state needs to be saved or broadcast.

An epoch: every eligible patient (≥ 2 images) contributes ``max(1, n_p // m)``
groups of ``m`` images drawn from a fresh permutation of its images (a patient
with fewer than ``m`` images repeats some, as ``MPerClassSampler`` does; the
augmentation makes the repeats differ). The groups are shuffled and cut into
batches of ``P`` groups; the incomplete last batch is dropped. A patient with
many images may land twice in one batch: harmless for the losses (more
positives), and rare when patients ≫ P.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


class PatientBatchSampler:
    """Batches of positions into a label array; see the module docstring.

    ``labels[i]`` is the patient (an int) of item ``i``. ``rank``/``world_size``
    select this process's share: batch ``j`` of the global list goes to rank
    ``j % world_size``, and every rank gets the same number of batches.
    """

    def __init__(self, labels: np.ndarray, m: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
        if m < 1 or batch_size % m:
            raise ValueError(f"batch_size ({batch_size}) must be a positive multiple of m ({m})")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        self.m, self.seed, self.rank, self.world_size = m, int(seed), rank, world_size
        order = np.argsort(labels, kind="stable")
        uniq, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
        self.groups: list[np.ndarray] = [order[s:s + c] for s, c in zip(starts, counts) if c >= 2]
        self.patient_labels = np.array([u for u, c in zip(uniq, counts) if c >= 2])
        wanted = batch_size // m
        self.patients_per_batch = min(wanted, len(self.groups))
        if 0 < self.patients_per_batch < wanted:
            log.warning("only %d patients have >= 2 images: batches hold %d patients × %d images instead of %d",
                        len(self.groups), self.patients_per_batch, m, batch_size)
        self._repeats = np.array([max(1, len(g) // m) for g in self.groups], dtype=np.int64)

    @property
    def n_patients(self) -> int:
        """Patients with at least 2 images (the only ones sampled)."""
        return len(self.groups)

    @property
    def batch_size(self) -> int:
        return self.patients_per_batch * self.m

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        if self.patients_per_batch < 2:
            return 0
        n_global = int(self._repeats.sum()) // self.patients_per_batch
        return n_global // self.world_size

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of ``epoch`` (each an int array of ``batch_size`` positions)."""
        n_local = len(self)
        if n_local == 0:
            return []
        rng = np.random.default_rng([self.seed, int(epoch), 0x5A3D])
        chunks: list[np.ndarray] = []
        for group, reps in zip(self.groups, self._repeats):
            perm = group[rng.permutation(len(group))]
            take = np.arange(reps * self.m) % len(perm)
            chunks.extend(perm[take].reshape(reps, self.m))
        order = rng.permutation(len(chunks))
        p = self.patients_per_batch
        n_global = n_local * self.world_size
        batches = [np.concatenate([chunks[k] for k in order[j * p:(j + 1) * p]]) for j in range(n_global)]
        return batches[self.rank::self.world_size]
