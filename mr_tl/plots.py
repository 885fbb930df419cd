"""Plots of a run (matplotlib, optional: ``pip install 'mr_tl[plots]'``): loss, accuracy, confusion."""

import numpy as np


def loss_series(metrics):
    """``(iterations, losses)``: one point per minibatch step, in order."""
    xs, ys = [], []
    for m in metrics:
        losses = m.get("losses") or []
        first = m["iteration"] - len(losses)
        for k, loss in enumerate(losses):
            xs.append(first + k + 1)
            ys.append(loss)
    return xs, ys


def smooth(values, weight=0.9):
    """Exponential moving average, debiased like TensorBoard's smoothing."""
    out, last, norm = [], 0.0, 0.0
    for v in values:
        last = weight * last + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(last / norm)
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(metrics, path):
    plt = _pyplot()
    xs, ys = loss_series(metrics)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(xs, ys, color="#9ecae1", linewidth=0.8, label="score (minibatch loss)")
    ax.plot(xs, smooth(ys), color="#08519c", linewidth=1.8, label="smoothed")
    ax.set_xlabel("iteration (minibatches per worker)")
    ax.set_ylabel("negative log-likelihood")
    ax.set_title("Model score vs iteration")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_accuracy(metrics, path):
    plt = _pyplot()
    points = [m for m in metrics if m.get("val_accuracy") is not None]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot([m["round"] for m in points], [m.get("train_accuracy") for m in points], "o-", label="train")
    ax.plot([m["round"] for m in points], [m["val_accuracy"] for m in points], "s-", label="validation")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusion(cm, classes, path, max_classes=60):
    """Confusion matrix heat map (row-normalized); needs matplotlib."""

    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    size = min(12, 3 + 0.25 * n)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= max_classes:
        ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
