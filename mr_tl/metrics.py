"""Classification metrics as plain functions over arrays (numpy only).

Everything derives from counts that can be summed across map tasks: the
confusion matrix (rows: true class, columns: predicted class), the number of
top-k hits, and the summed log-loss.  Macro averages follow scikit-learn's
``precision_recall_fscore_support(average="macro", zero_division=0)``: the
mean over every class that occurs in the true or the predicted labels, a
class with no predicted (or no true) examples counting as 0.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Self

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from mr_tl.head import SoftmaxHead


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` int64 counts; ``cm[t, p]`` = examples of class t predicted p."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def top_k_hits(scores: npt.ArrayLike, y_true: npt.ArrayLike, k: int = 5) -> int:
    """How many rows have their true class among the ``k`` highest scores."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return int(np.sum(np.any(top == np.asarray(y_true)[:, None], axis=1)))


def per_class(cm: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1, support.astype(np.int64)


def summarize(cm: npt.ArrayLike, top_k: int | None = None, loss_sum: float | None = None,
              k: int = 5) -> dict[str, float]:
    """The headline numbers from summed counts.

    ``top_k`` is the summed top-k hits, ``loss_sum`` the summed negative
    log-likelihood; both optional.
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = int(cm.sum())
    precision, recall, f1, support = per_class(cm)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0  # scikit-learn's unique_labels(y_true, y_pred)
    out: dict[str, float] = {
        "examples": n,
        "accuracy": float(np.trace(cm) / n) if n else 0.0,
        "precision": float(precision[present].mean()) if present.any() else 0.0,
        "recall": float(recall[present].mean()) if present.any() else 0.0,
        "f1": float(f1[present].mean()) if present.any() else 0.0,
    }
    if top_k is not None:
        out["top%d_accuracy" % k] = float(top_k / n) if n else 0.0
    if loss_sum is not None:
        out["loss"] = float(loss_sum / n) if n else 0.0
    return out


# Losses are summed as integers of this unit so that a total does not depend on
# the order in which partial sums arrive (float addition is not associative).
# Logits are computed in float64 (score_head); they can still differ in the last
# bits with how rows are batched (BLAS kernels), and a unit of 1e-6 makes it
# vanishingly rare (~1e-9 per example) that such a difference changes a count.
LOSS_UNIT = 1e-6
# A per-example loss is capped here before it becomes units (a head that gives the
# true class a probability below e^-1e6 is simply wrong), so each is < 2**60 units.
MAX_LOSS = 1e6


def loss_units(log_p_true: npt.ArrayLike) -> int:
    """Summed negative log-likelihood of the true classes, in LOSS_UNITs (a Python int)."""
    losses = np.nan_to_num(-np.asarray(log_p_true, dtype=np.float64), nan=MAX_LOSS, posinf=MAX_LOSS)
    units = np.rint(np.minimum(losses, MAX_LOSS) / LOSS_UNIT).astype(np.int64)
    return sum(int(u) for u in units)


def score_head(head: "SoftmaxHead", X: np.ndarray, y: np.ndarray, k: int = 5, with_confusion: bool = False,
               batch: int = 4096) -> "ScoreCounts":
    """:class:`ScoreCounts` of a head (mr_tl.head) on ``X``, ``y``: float64 logits, in batches."""
    counts = ScoreCounts(confusion=np.zeros((head.n_classes,) * 2, dtype=np.int64) if with_confusion else None)
    for start in range(0, len(y), batch):
        with np.errstate(over="ignore", invalid="ignore"):
            logits = head.logits(X[start:start + batch], dtype=np.float64)
        counts.add(ScoreCounts.of(logits, y[start:start + batch], k, with_confusion))
    return counts


class ScoreCounts:
    """How a head scores some examples, as counts that add up across map tasks in any order.

    ``examples``, ``correct`` (top-1), ``top_k`` hits and ``loss_units`` are
    integers; ``confusion`` is the confusion matrix, kept only when asked for
    (it is classes**2 integers: the evaluate job wants it, a training round
    does not).
    """

    FIELDS = ("examples", "correct", "top_k", "loss_units")

    def __init__(self, examples: int = 0, correct: int = 0, top_k: int = 0, loss_units: int = 0,
                 confusion: np.ndarray | None = None) -> None:
        self.examples, self.correct, self.top_k, self.loss_units = (int(examples), int(correct), int(top_k),
                                                                    int(loss_units))
        self.confusion = confusion

    @classmethod
    def of(cls, logits: np.ndarray, y: npt.ArrayLike, k: int = 5, with_confusion: bool = False) -> Self:
        """Counts for one batch of logits and true labels."""
        from mr_tl.head import log_softmax

        y = np.asarray(y, dtype=np.int64)
        with np.errstate(over="ignore", invalid="ignore"):
            log_p = log_softmax(np.asarray(logits))
        predicted = logits.argmax(axis=1)
        return cls(len(y), int(np.sum(predicted == y)), top_k_hits(logits, y, k) if len(y) else 0,
                   loss_units(log_p[np.arange(len(y)), y]),
                   confusion_matrix(y, predicted, logits.shape[1]) if with_confusion else None)

    def add(self, other: "ScoreCounts") -> Self:
        """Add ``other``'s counts to these (in place); returns self."""
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.confusion is not None:
            self.confusion = other.confusion.copy() if self.confusion is None else self.confusion + other.confusion
        return self

    def to_meta(self) -> dict[str, int]:
        """The counts as a JSON-able dict (the confusion matrix travels separately, as an array)."""
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_meta(cls, meta: Mapping[str, int | str], confusion: np.ndarray | None = None) -> Self:
        examples, correct, top_k, units = (int(meta[name]) for name in cls.FIELDS)
        return cls(examples, correct, top_k, units, confusion=confusion)

    @property
    def accuracy(self) -> float:
        return self.correct / self.examples if self.examples else 0.0

    @property
    def loss(self) -> float:
        return self.loss_units * LOSS_UNIT / self.examples if self.examples else 0.0

    def summary(self, k: int = 5) -> dict[str, float]:
        """accuracy, loss, top-k accuracy (and macro P/R/F1 when the confusion matrix is kept)."""
        if self.confusion is not None:
            return summarize(self.confusion, self.top_k, self.loss_units * LOSS_UNIT, k=k)
        return {"examples": self.examples, "accuracy": self.accuracy, "loss": self.loss,
                "top%d_accuracy" % k: self.top_k / self.examples if self.examples else 0.0}

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ScoreCounts) and self.to_meta() == other.to_meta()
                and (self.confusion is None) == (other.confusion is None)
                and (self.confusion is None
                     or (other.confusion is not None and np.array_equal(self.confusion, other.confusion))))

    def __repr__(self) -> str:
        return "ScoreCounts(%s)" % ", ".join("%s=%d" % (n, getattr(self, n)) for n in self.FIELDS)
