"""Classification metrics as plain functions over arrays (numpy only).

Everything derives from counts that can be summed across map tasks: the
confusion matrix (rows: true class, columns: predicted class), the number of
top-k hits, and the summed log-loss.  Macro averages follow scikit-learn's
``precision_recall_fscore_support(average="macro", zero_division=0)``: the
mean over every class that occurs in the true or the predicted labels, a
class with no predicted (or no true) examples counting as 0.
"""

import numpy as np


def confusion_matrix(y_true, y_pred, n_classes):
    """``(n_classes, n_classes)`` int64 counts; ``cm[t, p]`` = examples of class t predicted p."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def top_k_hits(scores, y_true, k=5):
    """How many rows have their true class among the ``k`` highest scores."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return int(np.sum(np.any(top == np.asarray(y_true)[:, None], axis=1)))


def per_class(cm):
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


def summarize(cm, top_k=None, loss_sum=None, k=5):
    """The headline numbers from summed counts.

    ``top_k`` is the summed top-k hits, ``loss_sum`` the summed negative
    log-likelihood; both optional.
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = int(cm.sum())
    precision, recall, f1, support = per_class(cm)
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0  # scikit-learn's unique_labels(y_true, y_pred)
    out = {
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
