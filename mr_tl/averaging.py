"""Averaging workers' parameters, the same bits wherever the sums happen.

Each worker ``w`` of a round reports its parameters and optimizer state
(float32 arrays) and the number of examples it trained on.  The next state is
the example-weighted mean.  Hadoop may pre-sum in a combiner (or not, or
twice), Spark and mrjob's local runners group map outputs differently, and
floating-point addition is not associative; so the sum is defined by a fixed
binary tree over worker indices:

    node (level, index) covers workers [index * 2**level, (index + 1) * 2**level)
    node = left child + right child      (a child covering no worker is skipped)

:func:`merge` combines any sibling pairs it is given, wherever it runs
(combiner or reducer), so every node, and the root, is the same float64
array no matter which process computed it.  Leaf sums ``n * x`` are exact in
float64 for float32 ``x`` and ``n < 2**29``.

Then an outer optimizer turns the mean into the next state (see
:class:`OuterOptimizer`): plain averaging (the reference recipe), or block
momentum (BMUF, Chen & Huo 2016), which keeps accuracy as workers grow.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, SupportsFloat, SupportsInt

import numpy as np
import numpy.typing as npt

F64 = np.float64

# A worker's per-minibatch losses (None: not finite), or {candidate name: losses} for several heads.
Losses = list[float | None] | dict[str, list[float | None]]


@dataclass
class Contribution:
    """The summed state of the workers under one tree node."""

    level: int
    index: int
    examples: int
    sums: dict[str, np.ndarray]  # name -> float64 array: sum of examples * value
    losses: dict[int, Losses] = field(default_factory=dict)  # worker -> per-minibatch losses

    @property
    def first_worker(self) -> int:
        return self.index << self.level

    def to_meta(self) -> dict[str, Any]:
        return {"level": self.level, "index": self.index, "examples": self.examples,
                "losses": {str(w): loss for w, loss in sorted(self.losses.items())}}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], arrays: Mapping[str, npt.ArrayLike]) -> Self:
        return cls(int(meta["level"]), int(meta["index"]), int(meta["examples"]),
                   {k: np.asarray(v, dtype=F64) for k, v in arrays.items()},
                   {int(w): dict(ls) if isinstance(ls, dict) else list(ls) for w, ls in meta.get("losses", {}).items()})


def leaf(worker: SupportsInt, examples: int, arrays: Mapping[str, npt.ArrayLike],
         losses: Iterable[SupportsFloat | None] | Mapping[Any, Iterable[SupportsFloat | None]] = ()) -> Contribution:
    """A worker's contribution: ``examples * value`` in float64 (exact).

    ``losses``: the worker's per-minibatch losses, or ``{name: losses}`` when it
    trained several heads (mr_tl.training.round's candidates).
    """
    n = F64(examples)
    kept: Losses
    if isinstance(losses, dict):
        kept = {str(k): [finite_or_none(x) for x in v] for k, v in losses.items()}
    else:
        kept = [finite_or_none(x) for x in losses]
    return Contribution(0, int(worker), int(examples),
                        {name: np.asarray(value, dtype=F64) * n for name, value in arrays.items()},
                        {int(worker): kept})


def empty_leaf(worker: SupportsInt, shapes: Mapping[str, tuple[int, ...]]) -> Contribution:
    """The contribution of a worker without examples: zero sums, zero examples, no losses."""
    return Contribution(0, int(worker), 0, {name: np.zeros(shape, dtype=F64) for name, shape in shapes.items()},
                        {int(worker): []})


def finite_or_none(x: SupportsFloat | None) -> float | None:
    """A loss as JSON can carry it: NaN and infinity (a diverging worker) become None."""
    v = float(x) if x is not None else None
    return v if v is not None and np.isfinite(v) else None


def _covers_nothing(level: int, index: int, n_workers: int) -> bool:
    return (index << level) >= n_workers


def _add(left: Contribution, right: Contribution) -> Contribution:
    sums = {name: left.sums[name] + right.sums[name] for name in left.sums}
    losses = dict(left.losses)
    losses.update(right.losses)
    return Contribution(left.level + 1, left.index // 2, left.examples + right.examples, sums, losses)


def _promote(node: Contribution) -> Contribution:
    return Contribution(node.level + 1, node.index // 2, node.examples, node.sums, node.losses)


def tree_height(n_workers: int) -> int:
    return max(0, (n_workers - 1).bit_length())


def merge(contributions: Iterable[Contribution], n_workers: int) -> list[Contribution]:
    """Combine sibling nodes as far as the given contributions allow.

    Returns the remaining nodes sorted by first worker; when every worker is
    present the result is the single root.
    """
    nodes: dict[tuple[int, int], Contribution] = {}
    for c in contributions:
        key = (c.level, c.index)
        if key in nodes:
            raise ValueError("contribution for workers %d.. at level %d given twice" % (c.first_worker, c.level))
        nodes[key] = c
    height = tree_height(n_workers)
    for level in range(height):
        for index in sorted(i for (lv, i) in list(nodes) if lv == level and i % 2 == 0):
            left = nodes[(level, index)]  # index is a key of nodes at this level
            right_key = (level, index + 1)
            parent = (level + 1, index // 2)
            complete = right_key in nodes or _covers_nothing(level, index + 1, n_workers)
            if complete and parent in nodes:
                raise ValueError("workers %d.. at level %d given twice (alone and inside a sum)"
                                 % (left.first_worker, level + 1))
            if right_key in nodes:
                nodes[parent] = _add(left, nodes.pop(right_key))
                del nodes[(level, index)]
            elif complete:
                nodes[parent] = _promote(nodes.pop((level, index)))
    return sorted(nodes.values(), key=lambda c: (c.first_worker, -c.level))


def mean_of(root: Contribution, n_workers: int) -> dict[str, np.ndarray]:
    """Example-weighted mean (float32 arrays) from the root of the tree."""
    if root.level != tree_height(n_workers) or root.index != 0:
        raise ValueError("incomplete round: have workers from %d at level %d, need the root"
                         % (root.first_worker, root.level))
    if root.examples == 0:
        raise ValueError("no worker trained on any example this round")
    n = F64(root.examples)
    return {name: (s / n).astype(np.float32) for name, s in root.sums.items()}


class OuterOptimizer:
    """What the averaging step does with the mean of the workers' parameters.

    ``average``: the next parameters are the mean (DL4J's
    ParameterAveragingTrainingMaster).

    ``block-momentum`` (BMUF, Nesterov form): with ``w`` the global
    parameters and ``s`` the point the workers started from,
    ``G <- eta * G + zeta * (mean - s)``, ``w <- w + G``, and workers next
    start from ``w + eta * G``.  Kept in float64 so that ``eta = 0,
    zeta = 1`` reproduces plain averaging bit for bit.
    """

    PARAMS = ("W", "b")

    def __init__(self, kind: str = "average", block_momentum: float | None = None, block_lr: float = 1.0,
                 n_workers: int = 1, params: Iterable[str] = PARAMS) -> None:
        if kind not in ("average", "block-momentum"):
            raise ValueError("outer optimizer must be 'average' or 'block-momentum', found %r" % kind)
        self.kind = kind
        self.params = tuple(params)   # the head's parameters (velocities are plain averages)
        self.eta = float(default_block_momentum(n_workers) if block_momentum is None else block_momentum)
        self.zeta = float(block_lr)
        if not 0 <= self.eta < 1 or self.zeta <= 0:
            raise ValueError("need 0 <= block momentum < 1 and block lr > 0, found %r, %r" % (self.eta, self.zeta))

    def initial_state(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outer state for fresh parameters (``params``: W, b)."""
        if self.kind == "average":
            return {}
        state: dict[str, np.ndarray] = {}
        for name in self.params:
            state["start_" + name] = params[name].copy()
            state["G_" + name] = np.zeros(params[name].shape, dtype=F64)
        return state

    def apply(self, mean: Mapping[str, np.ndarray],
              state: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(new parameters and optimizer state, new outer state)`` from the round's mean.

        ``state`` holds the current global ``W``, ``b`` plus the outer arrays.
        """
        if self.kind == "average":
            return dict(mean), {}
        out = dict(mean)  # velocities etc. are plain averages
        outer: dict[str, np.ndarray] = {}
        for name in self.params:
            start = state["start_" + name].astype(F64)
            G = self.eta * state["G_" + name] + self.zeta * (mean[name].astype(F64) - start)
            w = state[name].astype(F64) + G
            out[name] = w.astype(np.float32)
            outer["G_" + name] = G
            outer["start_" + name] = (w + self.eta * G).astype(np.float32)
        return out, outer


def default_block_momentum(n_workers: SupportsInt) -> float:
    """eta = 1 - 1/W (Chen & Huo): 0 for one worker, 0.875 for eight."""
    return 1.0 - 1.0 / max(1, int(n_workers))
