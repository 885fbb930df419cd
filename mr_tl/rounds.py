"""One training round as pure functions (numpy only, no mrjob).

* :func:`worker_round` is what a mapper does for one worker: local SGD from
  the state's start point over this round's minibatches.
* :func:`finish_round` is what the reducer does: complete the averaging tree,
  take the example-weighted mean, apply the outer optimizer.
* :func:`simulate_round` runs both in one process, in the same order with the
  same arithmetic, so it gives the same bits as a MapReduce round; the
  benchmarks sweep hyperparameters with it and a test checks the identity.
"""

from dataclasses import dataclass

import numpy as np

from mr_tl import averaging
from mr_tl.head import Nesterovs, SoftmaxHead, epoch_order, run_minibatches


@dataclass
class RoundParams:
    """What a round needs besides the state and the data."""

    workers: int
    epoch: int = 0
    first_batch: int = 0
    averaging_frequency: int = 5   # minibatches per round; 0 = one pass over the worker's examples
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.8
    l2: float = 0.0
    seed: int = 42
    outer_optimizer: str = "average"
    block_momentum: float = None
    block_lr: float = 1.0

    @classmethod
    def from_options(cls, options):
        """From an argparse/mrjob options object with the same attribute names."""
        return cls(**{name: getattr(options, name) for name in cls.__dataclass_fields__})

    def outer(self):
        return averaging.OuterOptimizer(self.outer_optimizer, self.block_momentum, self.block_lr, self.workers)


def start_point(arrays):
    """Where workers start: the block-momentum look-ahead if there is one, else W, b."""
    W = arrays.get("start_W", arrays["W"])
    b = arrays.get("start_b", arrays["b"])
    return SoftmaxHead(W.copy(), b.copy()), {"vW": arrays["vW"].copy(), "vb": arrays["vb"].copy()}


def worker_round(arrays, X, y, worker, params):
    """Local SGD of one worker: ``(examples, {W, b, vW, vb}, losses)``.

    ``X``, ``y`` are the worker's examples in id order; the worker visits
    them in the order drawn from ``(seed, epoch, worker)``.
    """
    head, velocity = start_point(arrays)
    optimizer = Nesterovs(params.lr, params.momentum)
    order = epoch_order(len(y), params.seed, params.epoch, worker)
    n_batches = params.averaging_frequency or -(-len(y) // params.batch_size)
    # A diverging worker overflows; that is reported by the driver's finiteness
    # check, not as warnings (which would also break mrjob's inline runner,
    # whose task stderr takes only bytes).
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        losses, examples = run_minibatches(head, velocity, optimizer, X, y, order, params.first_batch,
                                           n_batches, params.batch_size, params.l2)
    return examples, {"W": head.W, "b": head.b, "vW": velocity["vW"], "vb": velocity["vb"]}, losses


def finish_round(contributions, arrays, params):
    """The reducer: ``(next state arrays, meta)`` from the round's contributions."""
    merged = averaging.merge(contributions, params.workers)
    if len(merged) != 1:
        have = sorted(w for c in merged for w in c.losses)
        raise ValueError("round is missing workers: have %s of %d" % (have, params.workers))
    root = merged[0]
    mean = averaging.mean_of(root, params.workers)
    new_arrays, outer_arrays = params.outer().apply(mean, arrays)
    new_arrays.update(outer_arrays)
    meta = {"examples": root.examples, "losses": {str(w): l for w, l in sorted(root.losses.items())}}
    return new_arrays, meta


def simulate_round(arrays, worker_data, params):
    """A whole round in this process; ``worker_data[w] = (X, y)`` in id order."""
    leaves = []
    for worker, (X, y) in enumerate(worker_data):
        examples, values, losses = worker_round(arrays, X, y, worker, params)
        leaves.append(averaging.leaf(worker, examples, values, losses))
    return finish_round(leaves, arrays, params)


def split_by_worker(X, y, ids, worker_of, n_workers):
    """``[(X_w, y_w)]`` with each worker's examples in id order (as the worker files hold them)."""
    out = []
    for w in range(n_workers):
        rows = sorted((ids[i], i) for i in np.flatnonzero(worker_of == w))
        index = np.array([i for _, i in rows], dtype=np.int64)
        out.append((X[index], y[index]))
    return out
