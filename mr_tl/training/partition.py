"""Which worker trains on which example, and which round task holds which worker.

An example's worker is a seeded function of its id alone (:func:`worker_of`):
adding or removing one image never moves another, and the assignment is the
same on every runner and every retry.  Worker sizes therefore differ a
little (a multinomial draw, about ``sqrt(n / workers)``); the partition job
and the scan job report them exactly.

Workers are spread over round tasks in contiguous blocks
(:func:`task_of_worker`), so a task can already add up sibling workers of
the averaging tree (mr_tl.averaging) before anything is shuffled.
"""

import hashlib
from collections.abc import Iterable, Sequence
from typing import SupportsInt

import numpy as np


def worker_of(image_id: str, seed: SupportsInt, workers: SupportsInt) -> int:
    """The worker (0 .. workers-1) that trains on ``image_id``."""
    digest = hashlib.sha256(b"mr_tl.worker\0%d\0%s" % (int(seed), image_id.encode("utf-8"))).digest()
    return int.from_bytes(digest[:8], "little") % int(workers)


def workers_of(ids: Sequence[str], seed: SupportsInt, workers: SupportsInt) -> np.ndarray:
    """:func:`worker_of` of every id, as an int64 array."""
    return np.fromiter((worker_of(i, seed, workers) for i in ids), dtype=np.int64, count=len(ids))


def task_of_worker(worker: SupportsInt, workers: SupportsInt, tasks: SupportsInt) -> int:
    """The round task (0 .. tasks-1) that holds ``worker``: contiguous, balanced blocks."""
    return int(worker) * int(tasks) // int(workers)


def workers_of_task(task: int, workers: int, tasks: int) -> list[int]:
    """The workers task ``task`` holds (inverse of :func:`task_of_worker`)."""
    return [w for w in range(workers) if task_of_worker(w, workers, tasks) == task]


def rounds_per_epoch(worker_sizes: Iterable[SupportsInt], batch_size: int, averaging_frequency: int) -> int:
    """Rounds needed for the largest worker to see all its examples once (1 for a frequency in epochs)."""
    batches = max(-(-int(n) // batch_size) for n in worker_sizes)
    return 1 if averaging_frequency <= 0 else max(1, -(-batches // averaging_frequency))


def schedule(epochs: int, per_epoch: int, passes_per_round: int) -> list[tuple[int, int, int]]:
    """``[(epoch, first_batch index within it, passes)]`` of every round of a run."""
    if passes_per_round > 1:
        return [(e, 0, min(passes_per_round, epochs - e)) for e in range(0, epochs, passes_per_round)]
    return [(r // per_epoch, r % per_epoch, 1) for r in range(epochs * per_epoch)]
