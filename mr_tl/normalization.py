"""Feature normalization fitted on the train split (numpy only).

Kinds:

``none``            the raw features (the reference recipe).
``zscore``          ``(x - mean) / std`` per feature.
``sqrt-l2-zscore``  signed square root, then each row scaled to unit L2 norm,
                    then z-score (the statistics are those of the transformed rows).

The statistics come from summable integer sums (:class:`MomentSums`), which
a scan job adds up over map tasks in any order and still gets the same bits:
each value is rounded to a fixed point of 2**-24 before it is summed.
Standardizing keeps the step size of the reference learning rate sensible
(rows of about sqrt(D) length); plain L2 normalization would not (rows of
length 1 make lr 0.01 steps ~250x smaller on VGG16 features).
"""

from collections.abc import Iterable, Mapping
from typing import Any, Self

import numpy as np
import numpy.typing as npt

KINDS = ("none", "zscore", "sqrt-l2-zscore")
FIXED_POINT_BITS = 24
_SCALE = float(1 << FIXED_POINT_BITS)
_CHUNK = 256          # rows per int64 partial sum
_LIMIT = float(2 ** 30)  # |x| and x**2 are clipped here: 256 * 2**30 * 2**24 < 2**63, no int64 overflow
MIN_STD = 1e-6        # a constant feature is centred, not blown up


def pre_transform(X: npt.ArrayLike, kind: str) -> np.ndarray:
    """The part of the normalization that needs no statistics (float32 in, float32 out)."""
    A = np.asarray(X, dtype=np.float32)
    if kind == "sqrt-l2-zscore":
        A = np.sign(A) * np.sqrt(np.abs(A))
        norms = np.sqrt(np.einsum("ij,ij->i", A, A, dtype=np.float64)).astype(np.float32)
        A = A / np.maximum(norms, np.float32(1e-12))[:, None]
    return A


class MomentSums:
    """Count, sum and sum of squares per feature, as exact integers (fixed point 2**-24)."""

    def __init__(self, dim: int, count: int = 0, sums: Iterable[int] | None = None,
                 squares: Iterable[int] | None = None) -> None:
        self.dim = dim
        self.count = int(count)
        self.sums = list(sums) if sums is not None else [0] * dim
        self.squares = list(squares) if squares is not None else [0] * dim

    def add(self, X: npt.ArrayLike) -> Self:
        """Add rows (finite float values; beyond 2**30 they are clipped, a statistic of no use anyway)."""
        X = np.clip(np.asarray(X, dtype=np.float64), -_LIMIT, _LIMIT)
        for start in range(0, len(X), _CHUNK):
            chunk = X[start:start + _CHUNK]
            s = np.rint(chunk * _SCALE).astype(np.int64).sum(axis=0)
            sq = np.rint(np.minimum(np.square(chunk), _LIMIT) * _SCALE).astype(np.int64).sum(axis=0)
            self.sums = [a + int(b) for a, b in zip(self.sums, s)]
            self.squares = [a + int(b) for a, b in zip(self.squares, sq)]
        self.count += len(X)
        return self

    def update(self, other: "MomentSums") -> Self:
        self.count += other.count
        self.sums = [a + b for a, b in zip(self.sums, other.sums)]
        self.squares = [a + b for a, b in zip(self.squares, other.squares)]
        return self

    def to_json(self) -> dict[str, Any]:
        return {"dim": self.dim, "count": self.count, "sums": self.sums, "squares": self.squares}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        return cls(int(obj["dim"]), obj["count"], [int(x) for x in obj["sums"]], [int(x) for x in obj["squares"]])

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (float64) of every feature."""
        if not self.count:
            raise ValueError("no rows to compute statistics from")
        n = float(self.count)
        mean = np.array([s / _SCALE / n for s in self.sums], dtype=np.float64)
        second = np.array([s / _SCALE / n for s in self.squares], dtype=np.float64)
        std = np.sqrt(np.maximum(second - mean * mean, 0.0))
        return mean, std


class Normalizer:
    """Applies one kind of normalization with fitted statistics (float32)."""

    def __init__(self, kind: str, mean: npt.ArrayLike | None = None, std: npt.ArrayLike | None = None) -> None:
        if kind not in KINDS:
            raise ValueError("normalization must be one of %s, found %r" % (", ".join(KINDS), kind))
        self.kind = kind
        if kind != "none":
            self.mean = np.asarray(mean, dtype=np.float32)
            self.scale = (1.0 / np.maximum(np.asarray(std, dtype=np.float64), MIN_STD)).astype(np.float32)

    @classmethod
    def fit(cls, kind: str, moments: MomentSums) -> Self:
        if kind == "none":
            return cls("none")
        mean, std = moments.mean_std()
        return cls(kind, mean, std)

    def apply(self, X: npt.ArrayLike) -> np.ndarray:
        if self.kind == "none":
            return np.asarray(X, dtype=np.float32)
        return (pre_transform(X, self.kind) - self.mean) * self.scale

    def arrays(self) -> dict[str, np.ndarray]:
        """The statistics as arrays to store in the run (empty for ``none``)."""
        return {} if self.kind == "none" else {"norm_mean": self.mean, "norm_scale": self.scale}

    @classmethod
    def from_arrays(cls, kind: str, arrays: Mapping[str, npt.ArrayLike]) -> Self:
        if kind == "none":
            return cls("none")
        out = cls("none")
        out.kind, out.mean, out.scale = kind, np.asarray(arrays["norm_mean"], np.float32), np.asarray(
            arrays["norm_scale"], np.float32)
        return out
