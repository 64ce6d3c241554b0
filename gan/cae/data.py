"""Pairs of films of one patient, with their identity conditions, for the conditional autoencoder.

:func:`load_pair_data` is :func:`gan.data.load_gan_data` (the image store at
the training resolution and the embeddings of the chosen split) plus every
image's patient; only patients with at least two films are trained on.
:class:`PairSampler` decides each step's batch from ``(seed, step)`` alone, so
a resumed run reads exactly the batches an uninterrupted one would: patients
in epoch-wise permutations, ``batch / 2`` per step, and two distinct films of
each (drawn with an RNG seeded by ``(seed, step)``), as consecutive positions.
It plugs into :class:`gan.data.RealStream` like the GAN's sampler.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from gan.data import GanData, load_gan_data
from reid_core.data.manifest import load_manifest
from reid_core.errors import WorkspaceError
from reid_core.workspace import Workspace

_PATIENT_SALT = 0xCAE1
_FILM_SALT = 0xCAE2


@dataclass
class PairData:
    """:class:`GanData` plus each image's patient code and the position groups of trainable patients."""

    data: GanData
    patients: np.ndarray  # (N,) str patient id per position
    groups: list[np.ndarray]  # positions of each patient with >= 2 films


def load_pair_data(workspace: Workspace, resolution: int, splits: str = "train") -> PairData:
    """The training images, conditions and patients; WorkspaceError when no patient has two films."""
    data = load_gan_data(workspace, resolution, splits=splits)
    manifest = load_manifest(workspace.manifest_path).set_index("image_id")
    patients = manifest.loc[data.image_ids, "patient_id"].astype(str).to_numpy()
    _, codes = np.unique(patients, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    groups = [g for g in np.split(order, bounds) if len(g) >= 2]
    if len(groups) < 2:
        raise WorkspaceError(f"{workspace.root}: the conditional autoencoder needs at least two patients with two "
                             f"or more films in the {splits!r} images; found {len(groups)}")
    return PairData(data=data, patients=patients, groups=groups)


class PairSampler:
    """Positions of step ``s``: ``batch / 2`` patients, two distinct films each, pair-ordered."""

    def __init__(self, groups: list[np.ndarray], batch: int, seed: int) -> None:
        if batch < 2 or batch % 2:
            raise ValueError(f"batch must be even and >= 2, got {batch}")
        if len(groups) < 1 or any(len(g) < 2 for g in groups):
            raise ValueError("every group needs at least two films")
        self.groups, self.batch, self.seed = groups, batch, seed
        self.per_step = batch // 2
        self._perms: OrderedDict[int, np.ndarray] = OrderedDict()

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms[epoch] = np.random.default_rng([self.seed, _PATIENT_SALT, epoch]).permutation(len(self.groups))
            while len(self._perms) > 4:
                self._perms.popitem(last=False)
        return self._perms[epoch]

    def patients(self, step: int) -> np.ndarray:
        """Indices into ``groups`` of the patients of ``step``."""
        g = np.arange(step * self.per_step, (step + 1) * self.per_step, dtype=np.int64)
        epochs, offsets = np.divmod(g, len(self.groups))
        return np.array([self._perm(int(e))[o] for e, o in zip(epochs, offsets)], dtype=np.int64)

    def positions(self, step: int) -> np.ndarray:
        """The ``batch`` positions of ``step`` as ``[a0, b0, a1, b1, …]`` (``a_i``, ``b_i`` one patient's)."""
        rng = np.random.default_rng([self.seed, _FILM_SALT, step])
        out = [self.groups[p][rng.choice(len(self.groups[p]), 2, replace=False)] for p in self.patients(step)]
        return np.concatenate(out).astype(np.int64)
