"""Deterministic random streams.

Every random choice in mr_tl (the split, the weight initialisation, the
order in which a worker visits its examples) draws from a generator derived
from the user's ``--seed`` plus the names of what is being decided, e.g.
``rng(42, "shuffle", epoch, worker)``.  A retried task therefore makes the
same choices, byte for byte, whatever machine or runner it lands on.
"""

import hashlib

import numpy as np


def rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A ``numpy.random.Generator`` determined by ``seed`` and ``keys``.

    Keys may be ints or strings; they are hashed (not Python's salted
    ``hash()``) so the stream is the same in every process.
    """
    digest = hashlib.sha256(repr((int(seed),) + tuple(keys)).encode("utf-8")).digest()
    words = np.frombuffer(digest, dtype="<u4")
    return np.random.default_rng(np.random.SeedSequence(words.tolist()))
