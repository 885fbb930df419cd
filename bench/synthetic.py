"""Caltech-scale synthetic features for the training benchmarks (numpy only).

Class prototypes share a common non-negative base and differ by
``separation`` x noise; an example is 0.35 * ReLU(prototype + 2 * noise - 1):
non-negative, about 58 % zeros, norms around 30, like ReLU activations of a
network's last hidden layer, and hard enough that one worker needs several
epochs.  Splits are 70/15/15 at random.  Same seed, same numbers.
"""

import numpy as np

from mr_tl.seeding import rng


def synthetic_features(n, dim, classes, seed=0, separation=0.3, chunk=2048):
    """Yield ``(ids, labels, splits, X)`` chunks of a synthetic feature set."""
    g = rng(seed, "bench-features")
    base = np.maximum(g.standard_normal(dim, dtype=np.float32), 0) * 1.5
    prototypes = base + separation * g.standard_normal((classes, dim), dtype=np.float32)
    labels = np.arange(n) % classes
    for start in range(0, n, chunk):
        y = labels[start:start + chunk]
        noise = g.standard_normal((len(y), dim), dtype=np.float32)
        X = np.float32(0.35) * np.maximum(prototypes[y] + 2 * noise - 1, 0)
        u = g.random(len(y))
        splits = np.where(u < 0.70, "train", np.where(u < 0.85, "val", "test"))
        ids = ["c%03d/img%06d.jpg" % (label, start + i) for i, label in enumerate(y)]
        yield ids, y.astype(np.int64), list(splits), X


def synthetic_arrays(n, dim, classes, seed=0):
    """The whole set in memory: ``(ids, labels, splits, X)``."""
    ids, labels, splits, blocks = [], [], [], []
    for i, y, s, X in synthetic_features(n, dim, classes, seed):
        ids += i
        labels.append(y)
        splits += s
        blocks.append(X)
    return ids, np.concatenate(labels), splits, np.concatenate(blocks)
