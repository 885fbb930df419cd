"""One training round as pure functions (numpy only, no mrjob).

A round task holds whole workers (their training examples) and a share of
the validation split (:class:`TaskExamples`).  :func:`run_task` is what a
round task does: optionally score the round's *start* state on its
validation and training examples, then run local SGD for each of its
workers and add up sibling workers of the averaging tree.  :func:`finish_round`
is the averaging step (the reducer's, or the driver's after a map-only round
job): complete the tree, take the example-weighted mean, apply the outer
optimizer, add up the scores.

The map tasks of a MapReduce round (mr_tl.jobs.train_round) and the
in-process runner (mr_tl.training.in_process) call exactly these functions,
so both give the same bits, whatever the number of tasks.

**Candidates** (mr_tl.training.hyperparameters.Candidates): several heads
trained side by side on the same minibatches.  With one candidate the state
holds today's names (``W``, ``b``, ``vW``, ``vb``, ``start_W``, ``G_W``, ...);
with N > 1 candidate ``i``'s arrays carry the prefix ``c<i>/`` (``c3/W``,
``c3/vW``, ``c3/start_W`` ...) and the state holds ``dropped`` (int64, one per
candidate: 0 while it trains, else the round in which it diverged; it is
then frozen at its last finite state, neither trained nor scored).  Every
candidate goes through exactly the arithmetic of a run of its own: worker
leaves, the averaging tree and the outer optimizer work name by name, so a
candidate's arrays equal, bit for bit, those of a one-candidate run with its
hyperparameters.  Scores are named ``val``/``train`` (one candidate) or
``c<i>/val``/``c<i>/train``; per-minibatch losses are ``{worker: [..]}`` or
``{worker: {"<i>": [..]}}``.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mr_tl import averaging
from mr_tl.head import Nesterovs, SoftmaxHead, epoch_order, head_from_arrays, new_head, run_minibatches
from mr_tl.metrics import ScoreCounts, score_head
from mr_tl.training.hyperparameters import Candidates, Hyperparameters, as_candidates

if TYPE_CHECKING:
    from mr_tl.normalization import Normalizer

Arrays = dict[str, np.ndarray]   # a state: named arrays (parameters, velocities, outer state)


@dataclass(frozen=True)
class RoundSpec:
    """Where a round is in the schedule and what it does."""

    epoch: int = 0
    first_batch: int = 0   # index of the round's first minibatch within the epoch
    passes: int = 1        # epochs of local SGD in the round (with an averaging frequency in epochs)
    train: bool = True     # run local SGD (False: only score the state)
    score: bool = False    # score the start state on the val split and the training examples


class _Rows:
    """Feature rows of one group of examples, as they arrive; one float32 array at the end.

    ``capacity`` (when known) allocates the rows once at their final size;
    otherwise the buffer doubles as needed.
    """

    def __init__(self, dim: int, capacity: int | None = None) -> None:
        self.dim = dim
        self.ids: list[str] = []
        self.labels: list[int] = []
        self._buf: np.ndarray | None = np.empty((max(1, capacity or 256), dim), dtype=np.float32)

    def add(self, image_id: str, label: int, x: npt.ArrayLike) -> None:
        assert self._buf is not None  # rows are added before arrays() hands them over
        n = len(self.ids)
        if n == len(self._buf):
            grown = np.empty((2 * n, self.dim), dtype=np.float32)
            grown[:n] = self._buf
            self._buf = grown
        self._buf[n] = x
        self.ids.append(image_id)
        self.labels.append(label)

    def arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(ids, X, y)`` sorted by id (the order of a worker's examples on every runner)."""
        assert self._buf is not None  # the rows are handed over once
        n = len(self.ids)
        X = self._buf[:n]
        self._buf = None
        y = np.asarray(self.labels, dtype=np.int64)
        ids = self.ids
        if any(ids[i] > ids[i + 1] for i in range(n - 1)):
            order = sorted(range(n), key=ids.__getitem__)
            ids, X, y = [ids[i] for i in order], X[order], y[order]
        return ids, X, y


class TaskExamples:
    """The examples one round task holds: whole workers and a share of the val split.

    ``worker_sizes`` (optional): examples per worker, so each worker's rows are
    allocated once at their final size.
    """

    def __init__(self, dim: int, worker_sizes: Sequence[int] | np.ndarray | None = None) -> None:
        self.dim = dim
        self.worker_sizes = worker_sizes
        self.workers: dict[int, _Rows] = {}
        self.val = _Rows(dim)

    def add_train(self, worker: int, image_id: str, label: int, x: npt.ArrayLike) -> None:
        rows = self.workers.get(worker)
        if rows is None:
            size = int(self.worker_sizes[worker]) if self.worker_sizes is not None else None
            rows = self.workers[worker] = _Rows(self.dim, size)
        rows.add(image_id, label, x)

    def add_val(self, image_id: str, label: int, x: npt.ArrayLike) -> None:
        self.val.add(image_id, label, x)

    def __len__(self) -> int:
        return sum(len(r.ids) for r in self.workers.values()) + len(self.val.ids)

    def iter_workers(self, normalizer: "Normalizer | None" = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(worker, X, y)`` per worker in worker order, rows in id order, normalized; each worker's
        rows are handed over (and forgotten here) one at a time."""
        for worker in sorted(self.workers):
            _, X, y = self.workers.pop(worker).arrays()
            yield worker, (normalizer.apply(X) if normalizer is not None else X), y

    def val_arrays(self, normalizer: "Normalizer | None" = None) -> tuple[np.ndarray, np.ndarray]:
        _, X, y = self.val.arrays()
        return (normalizer.apply(X) if normalizer is not None else X), y


def param_names(arrays: Mapping[str, object]) -> list[str]:
    """The head's parameter names in a state: ``W``, ``b`` (and ``W1``, ``b1`` with a hidden layer)."""
    return [name for name in ("W1", "b1", "W", "b") if name in arrays]


DROPPED = "dropped"   # state array of a run with several candidates (see the module docstring)


def prefix(index: int, n_candidates: int) -> str:
    """The prefix of candidate ``index``'s arrays: none for a single candidate, else ``c<index>/``."""
    return "c%d/" % index if n_candidates > 1 else ""


def candidate_arrays(arrays: Mapping[str, np.ndarray], index: int, n_candidates: int) -> Mapping[str, np.ndarray]:
    """Candidate ``index``'s arrays of a state, without their prefix."""
    if n_candidates == 1:
        return arrays
    p = prefix(index, n_candidates)
    return {name[len(p):]: value for name, value in arrays.items() if name.startswith(p)}


def with_prefix(arrays: Mapping[str, np.ndarray], p: str) -> Arrays:
    return {p + name: value for name, value in arrays.items()}


def dropped_in(arrays: Mapping[str, np.ndarray], n_candidates: int) -> np.ndarray:
    """``dropped`` of a state: per candidate 0 (training) or the round it diverged in."""
    return arrays[DROPPED] if DROPPED in arrays else np.zeros(n_candidates, dtype=np.int64)


def alive(arrays: Mapping[str, np.ndarray], n_candidates: int) -> list[int]:
    """The candidates still trained and scored, in index order."""
    return [i for i, r in enumerate(dropped_in(arrays, n_candidates)) if not r]


def start_point(arrays: Mapping[str, np.ndarray]) -> tuple[SoftmaxHead, Arrays]:
    """Where workers start: the block-momentum look-ahead if there is one, else the parameters."""
    names = param_names(arrays)
    head = head_from_arrays({name: arrays.get("start_" + name, arrays[name]).copy() for name in names})
    return head, {"v" + name: arrays["v" + name].copy() for name in names}


def worker_round(arrays: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray, worker: int,
                 hyper: Hyperparameters, spec: RoundSpec) -> tuple[int, Arrays, list[float]]:
    """Local SGD of one worker: ``(examples, {parameters and velocities}, losses)``.

    ``X``, ``y`` are the worker's examples in id order; the worker visits
    them in the order drawn from ``(seed, epoch, worker)``.
    """
    head, velocity = start_point(arrays)
    optimizer = Nesterovs(hyper.lr, hyper.momentum)
    whole_passes = hyper.passes_per_round > 0
    n_batches = -(-len(y) // hyper.batch_size) if whole_passes else hyper.averaging_frequency
    losses: list[float] = []
    examples = 0
    # A diverging worker overflows; that is reported by the driver's finiteness
    # check, not as warnings (which would also break mrjob's inline runner,
    # whose task stderr takes only bytes).
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for p in range(spec.passes if whole_passes else 1):
            order = epoch_order(len(y), hyper.seed, spec.epoch + p, worker)
            pass_losses, pass_examples = run_minibatches(head, velocity, optimizer, X, y, order, spec.first_batch,
                                                         n_batches, hyper.batch_size, hyper.l2)
            losses += pass_losses
            examples += pass_examples
    values = dict(head.params())
    values.update(velocity)
    return examples, values, losses


@dataclass
class TaskResult:
    """What one round task sends on: tree nodes (with a leaf's float32 values), and scores."""

    # [(Contribution, leaf values or None)]
    nodes: list[tuple[averaging.Contribution, Arrays | None]] = field(default_factory=list)
    scores: dict[str, ScoreCounts] = field(default_factory=dict)  # {"val": ScoreCounts, "train": ScoreCounts}


def run_task(arrays: Mapping[str, np.ndarray], workers: Iterable[tuple[int, np.ndarray, np.ndarray]],
             val: tuple[np.ndarray, np.ndarray] | None, candidates: Candidates | Hyperparameters,
             spec: RoundSpec) -> TaskResult:
    """One round task: score the start state (``spec.score``), run local SGD per worker (``spec.train``).

    ``workers``: ``(worker, X, y)`` of each worker the task holds, rows in id order and
    normalized; ``val``: ``(X, y)`` of its validation examples (or None when not scoring).
    ``candidates``: :class:`Candidates` (or one :class:`Hyperparameters`); each candidate
    still trained runs on every worker's minibatches, one after the other.
    """
    candidates = as_candidates(candidates)
    n = len(candidates)
    trained = [(i, prefix(i, n), candidates[i], candidate_arrays(arrays, i, n)) for i in alive(arrays, n)]
    result = TaskResult()
    heads = {i: head_from_arrays(sub) for i, _, _, sub in trained} if spec.score else {}
    if spec.score:
        for i, p, _, _ in trained:
            result.scores[p + "val"], result.scores[p + "train"] = ScoreCounts(), ScoreCounts()
            if val is not None:
                result.scores[p + "val"].add(score_head(heads[i], *val))
    leaves: list[averaging.Contribution] = []
    values_of: dict[tuple[int, int], Arrays] = {}
    for worker, X, y in workers:
        if not len(y):
            continue   # an empty worker (possible with few examples per worker): see finish_round
        if spec.score:
            for i, p, _, _ in trained:
                result.scores[p + "train"].add(score_head(heads[i], X, y))
        if spec.train:
            values: Arrays = {}
            losses: dict[str, list[float]] = {}
            examples = 0
            for i, p, hyper, sub in trained:
                examples, candidate_values, losses[str(i)] = worker_round(sub, X, y, worker, hyper, spec)
                values.update(with_prefix(candidate_values, p))
            leaves.append(averaging.leaf(worker, examples, values, losses if n > 1 else losses["0"]))
            values_of[(0, worker)] = values
    # siblings held by this task are added up here (what a combiner would do)
    for node in averaging.merge(leaves, candidates[0].workers):
        result.nodes.append((node, values_of.get((node.level, node.index))))
    return result


def add_scores(parts: Iterable[Mapping[str, ScoreCounts]]) -> dict[str, ScoreCounts]:
    """Sum ``{"val": ScoreCounts, ...}`` dicts."""
    total: dict[str, ScoreCounts] = {}
    for part in parts:
        for name, counts in part.items():
            total.setdefault(name, ScoreCounts()).add(counts)
    return total


def finish_round(contributions: Iterable[averaging.Contribution], scores: Mapping[str, ScoreCounts], arrays: Arrays,
                 candidates: Candidates | Hyperparameters, spec: RoundSpec,
                 worker_sizes: Sequence[int] | None = None) -> tuple[Arrays, dict[str, Any]]:
    """The averaging step: ``(next state arrays, meta)`` from the round's contributions and score parts.

    A worker with no examples (``worker_sizes``) has no task to speak for it: it
    joins the tree as an empty leaf.  A score-only round (``spec.train`` false)
    returns the state unchanged; so does a round for a dropped candidate's arrays.
    """
    candidates = as_candidates(candidates)
    n = len(candidates)
    workers = candidates[0].workers
    meta: dict[str, Any] = {}
    new_arrays = arrays
    if spec.train:
        trained = alive(arrays, n)
        contributions = list(contributions)
        if worker_sizes is not None:
            shapes: dict[str, tuple[int, ...]] = {}
            for i in trained:
                sub, p = candidate_arrays(arrays, i, n), prefix(i, n)
                shapes.update({p + name: sub[name].shape for m in param_names(sub) for name in (m, "v" + m)})
            contributions += [averaging.empty_leaf(w, shapes) for w, n_w in enumerate(worker_sizes) if not n_w]
        merged = averaging.merge(contributions, workers)
        if len(merged) != 1:
            have = sorted(w for c in merged for w in c.losses)
            raise ValueError("round is missing workers: have %s of %d" % (have, workers))
        root = merged[0]
        new_arrays = {}
        # A diverged candidate's infinities are reported by the driver's finiteness check,
        # not as warnings (see worker_round).
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mean = averaging.mean_of(root, workers)
            for i in range(n):
                p, sub = prefix(i, n), candidate_arrays(arrays, i, n)
                if i not in trained:
                    new_arrays.update(with_prefix(sub, p))   # frozen where it diverged
                    continue
                hyper = candidates[i]
                outer = averaging.OuterOptimizer(hyper.outer_optimizer, hyper.block_momentum, hyper.block_lr,
                                                 hyper.workers, param_names(sub))
                mine = mean if n == 1 else candidate_arrays(mean, i, n)
                params, outer_arrays = outer.apply(mine, sub)
                params.update(outer_arrays)
                new_arrays.update(with_prefix(params, p))
        if n > 1:
            new_arrays[DROPPED] = dropped_in(arrays, n)
        meta = {"examples": root.examples, "losses": {str(w): loss for w, loss in sorted(root.losses.items())}}
    if spec.score:
        meta["scores"] = {name: counts.to_meta() for name, counts in sorted(scores.items())}
    return new_arrays, meta


def initial_state(n_features: int, n_classes: int, candidates: Candidates | Hyperparameters) -> Arrays:
    """Round 0: Xavier-initialised heads, zero velocity, the outer optimizer's state (per candidate)."""
    candidates = as_candidates(candidates)
    n = len(candidates)
    state: Arrays = {}
    for i, hyper in enumerate(candidates):
        head = new_head(n_features, n_classes, hyper.seed, hyper.hidden)
        arrays = dict(head.params())
        arrays.update(Nesterovs(hyper.lr, hyper.momentum).init_state(head))
        outer = averaging.OuterOptimizer(hyper.outer_optimizer, hyper.block_momentum, hyper.block_lr,
                                         hyper.workers, head.PARAMS)
        arrays.update(outer.initial_state(arrays))
        state.update(with_prefix(arrays, prefix(i, n)))
    if n > 1:
        state[DROPPED] = np.zeros(n, dtype=np.int64)
    return state


def simulate_round(arrays: Arrays, worker_data: Sequence[tuple[np.ndarray, np.ndarray]],
                   candidates: Candidates | Hyperparameters, spec: RoundSpec,
                   val: tuple[np.ndarray, np.ndarray] | None = None, tasks: int = 1) -> tuple[Arrays, dict[str, Any]]:
    """A whole round in this process: ``worker_data[w] = (X, y)`` in id order; ``val = (X, y)`` or None.

    ``tasks`` spreads the workers over that many simulated tasks (it does not change the result).
    """
    from mr_tl.training.partition import task_of_worker

    candidates = as_candidates(candidates)
    workers = candidates[0].workers
    results: list[TaskResult] = []
    for task in range(tasks):
        mine = [(w, X, y) for w, (X, y) in enumerate(worker_data) if task_of_worker(w, workers, tasks) == task]
        results.append(run_task(arrays, mine, val if task == 0 else None, candidates, spec))
    nodes = [node for r in results for node, _ in r.nodes]
    sizes = [len(y) for _, y in worker_data]
    return finish_round(nodes, add_scores(r.scores for r in results), arrays, candidates, spec, sizes)
