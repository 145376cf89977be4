"""Training batches: plain shuffled batches, or plate-aware batches (CellDeathPred).

A plate-aware batch holds ``n_plates`` plates x ``n_classes`` classes x ``n_per_class`` units of
each class from each of those plates (the paper: 2 x 3 x 5 = 30), so SupCon sees positives across
plates in every batch and learns to ignore the plate.

Why not pytorch-metric-learning's ``HierarchicalSampler`` on (class, plate) labels: it draws from
the library's module-global NumPy random state (no per-sampler seed, so a resumed run cannot redo
an epoch's batches), it reshuffles on every ``iter()``, and when a plate lacks a class it silently
fills the sub-batch with fewer classes, so "every batch holds every class of every plate" is not
guaranteed. :class:`PlateAwareSampler` keeps the same batch structure, checks that each plate used
has every class (plates lacking one are left out, and said in the log), and derives each epoch's
batches from ``(seed, epoch)`` alone.
"""

from __future__ import annotations

import logging

import numpy as np

from .data import DeepInputError

LOG = logging.getLogger("hcsflow.deep")


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(stream)])


def shuffled_batches(
    n: int, batch_size: int, seed: int, epoch: int, drop_last: bool = True
) -> list[np.ndarray]:
    """A seeded permutation of ``range(n)`` cut into batches (the last short one dropped when
    ``drop_last`` and there is more than one batch)."""
    perm = epoch_rng(seed, epoch).permutation(n)
    batches = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches = batches[:-1]
    return batches


class PlateAwareSampler:
    """Batches of ``n_plates`` plates x every class x ``n_per_class`` units (positions into the
    ``classes``/``plates`` arrays of the training units)."""

    def __init__(
        self,
        classes,
        plates,
        n_plates: int,
        n_per_class: int,
        seed: int = 0,
        n_batches: int | None = None,
        log=None,
    ):
        log = log or LOG
        self.classes = np.asarray(classes)
        self.plates = np.asarray(plates).astype(str)
        self.n_plates, self.n_per_class, self.seed = int(n_plates), int(n_per_class), int(seed)
        self.class_ids = sorted(set(self.classes.tolist()))
        pools = {}
        for p in sorted(set(self.plates.tolist())):
            for c in self.class_ids:
                pools[(p, c)] = np.flatnonzero((self.plates == p) & (self.classes == c))
        complete = [
            p
            for p in sorted(set(self.plates.tolist()))
            if all(len(pools[(p, c)]) for c in self.class_ids)
        ]
        lacking = sorted(set(self.plates.tolist()) - set(complete))
        if lacking:
            log.warning(
                "plate-aware batches leave out plate(s) %s: they lack training units of some class",
                lacking,
            )
        if len(complete) < self.n_plates:
            raise DeepInputError(
                f"plate-aware batches need {self.n_plates} plates with training units of every class "
                f"{self.class_ids}; only {complete or 'none'} have them. Lower "
                f"deep.models.<model>.batch.n_plates or set batch.plate_aware: false"
            )
        self.eligible = complete
        self.pools = pools
        self.batch_size = self.n_plates * self.n_per_class * len(self.class_ids)
        n_used = sum(len(pools[(p, c)]) for p in complete for c in self.class_ids)
        self.n_batches = int(n_batches) if n_batches else max(1, n_used // self.batch_size)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The batches of ``epoch`` (the same for the same seed and epoch)."""
        rng = epoch_rng(self.seed, epoch, 1)
        queues = {k: list(rng.permutation(v)) for k, v in self.pools.items() if len(v)}
        out = []
        for _ in range(self.n_batches):
            chosen = rng.choice(len(self.eligible), self.n_plates, replace=False)
            batch = []
            for pi in sorted(chosen):
                p = self.eligible[pi]
                for c in self.class_ids:
                    q, pool = queues[(p, c)], self.pools[(p, c)]
                    for _ in range(self.n_per_class):
                        if not q:  # pool used up: start a new pass over it
                            q.extend(rng.permutation(pool))
                        batch.append(q.pop())
            out.append(rng.permutation(np.asarray(batch, dtype=np.int64)))
        return out

    def __len__(self):
        return self.n_batches


def batch_composition(batches, plates, classes) -> list[dict]:
    """What each batch holds: ``[{plate: {class: count}}]`` (positions of ``batches`` index the
    ``plates``/``classes`` arrays of the training samples). Saved in ``model.json`` so a run shows
    that its batches were plate-aware (every batch: ``n_plates`` plates x every class x
    ``n_per_class``) or, for plain shuffled batches, how the plates fell."""
    plates, classes = np.asarray(plates).astype(str), np.asarray(classes).astype(str)
    out = []
    for b in batches:
        comp: dict = {}
        for p, c in zip(plates[b], classes[b], strict=True):
            comp.setdefault(p, {})
            comp[p][c] = comp[p].get(c, 0) + 1
        out.append({p: dict(sorted(v.items())) for p, v in sorted(comp.items())})
    return out


def composition_summary(compositions: list[dict], class_names) -> dict:
    """Over all recorded batches: plates per batch and units per (plate, class) cell of a batch
    (a missing class of a plate in the batch counts 0), each as ``[min, max]``."""
    if not compositions:
        return {"batches": 0}
    n_plates = [len(c) for c in compositions]
    cells = [c.get(cls, 0) for comp in compositions for c in comp.values() for cls in class_names]
    return {
        "batches": len(compositions),
        "plates_per_batch": [min(n_plates), max(n_plates)],
        "units_per_plate_and_class": [min(cells), max(cells)],
        "batch_size": [
            min(sum(sum(v.values()) for v in c.values()) for c in compositions),
            max(sum(sum(v.values()) for v in c.values()) for c in compositions),
        ],
    }
