"""The new head and its optimizer, in numpy (float32).

Mirrors the reference recipe's Deeplearning4j configuration: one
``OutputLayer`` D -> C with softmax activation and negative log-likelihood
loss averaged over the minibatch, ``WeightInit.XAVIER``, the ``Nesterovs``
updater, optional L2 (:class:`SoftmaxHead`).  With ``--hidden N`` the head
is ``D -> N (ReLU) -> C`` (:class:`MLPHead`), trained the same way.

A head is a set of named float32 parameter arrays (``W``, ``b``; and ``W1``,
``b1`` for the hidden layer); the optimizer keeps one velocity per
parameter (``v`` + name).  Averaging, checkpoints and the outer optimizer
handle them by name, so the arithmetic is the same for both kinds.

    head = SoftmaxHead.xavier(4096, 257, seed=42)
    opt = Nesterovs(lr=0.01, momentum=0.8)
    velocity = opt.init_state(head)
    loss = sgd_step(head, velocity, opt, X_batch, y_batch)
"""

from collections.abc import Mapping
from typing import Self

import numpy as np
import numpy.typing as npt

from mr_tl.seeding import rng

F32 = np.float32


def _xavier(shape: tuple[int, int], seed: int, *keys: int | str) -> np.ndarray:
    """DL4J ``WeightInit.XAVIER``: N(0, 2 / (fan_in + fan_out)), seeded by (seed, "xavier", keys...)."""
    std = np.sqrt(2.0 / (shape[0] + shape[1]))
    return (rng(seed, "xavier", *keys).standard_normal(shape) * std).astype(F32)


class SoftmaxHead:
    """Softmax regression: ``p = softmax(X @ W + b)``.

    ``W`` is ``(n_features, n_classes)`` and ``b`` ``(n_classes,)``, both float32.
    """

    PARAMS: tuple[str, ...] = ("W", "b")

    def __init__(self, W: npt.ArrayLike, b: npt.ArrayLike) -> None:
        W = np.asarray(W)
        b = np.asarray(b)
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError("W must be (features, classes) and b (classes,), found %s and %s"
                             % (W.shape, b.shape))
        self.W = np.ascontiguousarray(W, dtype=F32)
        self.b = np.ascontiguousarray(b, dtype=F32)

    @classmethod
    def xavier(cls, n_features: int, n_classes: int, seed: int) -> Self:
        """DL4J ``WeightInit.XAVIER``: W ~ N(0, 2 / (fan_in + fan_out)), b = 0, seeded."""
        return cls(_xavier((n_features, n_classes), seed), np.zeros(n_classes, dtype=F32))

    @property
    def n_features(self) -> int:
        return self.first_weights.shape[0]

    @property
    def n_classes(self) -> int:
        return self.W.shape[1]

    @property
    def first_weights(self) -> np.ndarray:
        return self.W

    def params(self) -> dict[str, np.ndarray]:
        """``{name: array}`` of the parameters (the arrays themselves: updates happen in place)."""
        return {name: getattr(self, name) for name in self.PARAMS}

    def check_features(self, X: npt.ArrayLike) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError("X has %s features, but the head expects %d"
                             % (X.shape[1] if X.ndim == 2 else "?", self.n_features))
        return X

    def logits(self, X: np.ndarray, dtype: npt.DTypeLike = F32) -> np.ndarray:
        """Class scores; ``dtype=np.float64`` computes them in float64 (scoring, mr_tl.metrics)."""
        if dtype == F32:
            return X @ self.W + self.b
        return np.asarray(X, dtype=dtype) @ self.W.astype(dtype) + self.b.astype(dtype)

    def predict_proba(self, X: npt.ArrayLike) -> np.ndarray:
        return softmax(self.logits(self.check_features(X)))

    def predict(self, X: npt.ArrayLike) -> np.ndarray:
        return np.argmax(self.logits(self.check_features(X)), axis=1)

    def _output_grad(self, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean NLL of logits ``z`` and its gradient with respect to ``z``."""
        log_p = log_softmax(z)
        n = len(y)
        rows = np.arange(n)
        loss = -float(np.mean(log_p[rows, y], dtype=np.float64))
        delta = np.exp(log_p)
        delta[rows, y] -= F32(1)
        delta /= F32(n)
        return loss, delta

    def _l2(self, loss: float, grads: dict[str, np.ndarray], l2: float) -> tuple[float, dict[str, np.ndarray]]:
        """Add ``l2/2 * ||weights||^2`` (weights, not biases) to the loss and its gradient."""
        if l2:
            for name in self.PARAMS:
                if name.startswith("W"):
                    loss += 0.5 * l2 * float(np.sum(np.square(getattr(self, name), dtype=np.float64)))
                    grads[name] += F32(l2) * getattr(self, name)
        return loss, grads

    def loss_and_grad(self, X: np.ndarray, y: np.ndarray, l2: float = 0.0) -> tuple[float, dict[str, np.ndarray]]:
        """Mean NLL over the minibatch (+ l2/2 * ||W||^2) and the gradients ``(loss, {name: grad})``."""
        loss, delta = self._output_grad(self.logits(X), y)
        grads = {"W": (X.T @ delta).astype(F32, copy=False), "b": delta.sum(axis=0).astype(F32, copy=False)}
        return self._l2(loss, grads, l2)


class MLPHead(SoftmaxHead):
    """One hidden layer: ``p = softmax(relu(X @ W1 + b1) @ W + b)``."""

    PARAMS = ("W1", "b1", "W", "b")

    def __init__(self, W1: npt.ArrayLike, b1: npt.ArrayLike, W: npt.ArrayLike, b: npt.ArrayLike) -> None:
        super().__init__(W, b)
        W1, b1 = np.asarray(W1), np.asarray(b1)
        if W1.ndim != 2 or b1.shape != (W1.shape[1],) or W1.shape[1] != self.W.shape[0]:
            raise ValueError("W1 must be (features, hidden), b1 (hidden,) and W (hidden, classes), found %s, %s, %s"
                             % (W1.shape, b1.shape, self.W.shape))
        self.W1 = np.ascontiguousarray(W1, dtype=F32)
        self.b1 = np.ascontiguousarray(b1, dtype=F32)

    @classmethod
    def xavier(cls, n_features: int, n_classes: int, seed: int, hidden: int = 512) -> Self:
        """Xavier for both layers (the output layer drawn as in :class:`SoftmaxHead`'s stream), zero biases."""
        return cls(_xavier((n_features, hidden), seed, "hidden"), np.zeros(hidden, dtype=F32),
                   _xavier((hidden, n_classes), seed), np.zeros(n_classes, dtype=F32))

    @property
    def first_weights(self) -> np.ndarray:
        return self.W1

    @property
    def hidden(self) -> int:
        return self.W1.shape[1]

    def _hidden(self, X: np.ndarray, dtype: npt.DTypeLike = F32) -> np.ndarray:
        if dtype == F32:
            return np.maximum(X @ self.W1 + self.b1, F32(0))
        return np.maximum(np.asarray(X, dtype=dtype) @ self.W1.astype(dtype) + self.b1.astype(dtype), 0)

    def logits(self, X: np.ndarray, dtype: npt.DTypeLike = F32) -> np.ndarray:
        H = self._hidden(X, dtype)
        if dtype == F32:
            return H @ self.W + self.b
        return H @ self.W.astype(dtype) + self.b.astype(dtype)

    def loss_and_grad(self, X: np.ndarray, y: np.ndarray, l2: float = 0.0) -> tuple[float, dict[str, np.ndarray]]:
        H = self._hidden(X)
        loss, delta = self._output_grad(H @ self.W + self.b, y)
        dH = delta @ self.W.T
        dH[H <= 0] = F32(0)
        grads = {"W1": (X.T @ dH).astype(F32, copy=False), "b1": dH.sum(axis=0).astype(F32, copy=False),
                 "W": (H.T @ delta).astype(F32, copy=False), "b": delta.sum(axis=0).astype(F32, copy=False)}
        return self._l2(loss, grads, l2)


def head_from_arrays(arrays: Mapping[str, npt.ArrayLike]) -> SoftmaxHead:
    """The head whose parameters ``arrays`` holds (a hidden layer if there is a ``W1``)."""
    if "W1" in arrays:
        return MLPHead(arrays["W1"], arrays["b1"], arrays["W"], arrays["b"])
    return SoftmaxHead(arrays["W"], arrays["b"])


def new_head(n_features: int, n_classes: int, seed: int, hidden: int = 0) -> SoftmaxHead:
    """A freshly initialised head (Xavier, seeded): softmax only, or with a hidden layer of ``hidden`` units."""
    if hidden:
        return MLPHead.xavier(n_features, n_classes, seed, hidden)
    return SoftmaxHead.xavier(n_features, n_classes, seed)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax along the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(z))


class Nesterovs:
    """DL4J's ``Nesterovs`` updater (lr 0.01, momentum 0.8 by default)::

        v_prev = v
        v      = momentum * v - lr * gradient
        params -= momentum * v_prev - (1 + momentum) * v

    (DL4J computes the update ``momentum * v_prev + (-1 - momentum) * v``
    and subtracts it from the parameters; so do we, in float32.)  One
    velocity per parameter, named ``v`` + the parameter's name.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.8) -> None:
        if lr <= 0 or not 0 <= momentum < 1:
            raise ValueError("need lr > 0 and 0 <= momentum < 1, found lr=%r momentum=%r" % (lr, momentum))
        self.lr = F32(lr)
        self.momentum = F32(momentum)

    def init_state(self, head: SoftmaxHead) -> dict[str, np.ndarray]:
        return {"v" + name: np.zeros_like(value) for name, value in head.params().items()}

    def update(self, param: np.ndarray, grad: np.ndarray, v: np.ndarray) -> None:
        """Apply one step to ``param`` in place, updating velocity ``v`` in place."""
        v_prev = v.copy()
        v *= self.momentum
        v -= grad * self.lr
        update = v_prev * self.momentum + v * (-self.momentum - F32(1))
        param -= update

    def step(self, head: SoftmaxHead, state: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        for name, param in head.params().items():
            self.update(param, grads[name], state["v" + name])


def sgd_step(head: SoftmaxHead, state: Mapping[str, np.ndarray], optimizer: Nesterovs, X: np.ndarray, y: np.ndarray,
             l2: float = 0.0) -> float:
    """One minibatch: gradient at the current parameters, then the update. Returns the loss."""
    loss, grads = head.loss_and_grad(X, y, l2)
    optimizer.step(head, state, grads)
    return loss


def epoch_order(n: int, seed: int, epoch: int, worker: int) -> np.ndarray:
    """The order in which ``worker`` visits its ``n`` examples in ``epoch``."""
    return rng(seed, "shuffle", epoch, worker).permutation(n)


def run_minibatches(head: SoftmaxHead, state: Mapping[str, np.ndarray], optimizer: Nesterovs, X: np.ndarray,
                    y: np.ndarray, order: np.ndarray, first_batch: int, n_batches: int, batch_size: int,
                    l2: float = 0.0) -> tuple[list[float], int]:
    """Minibatches ``first_batch .. first_batch + n_batches - 1`` of ``order``.

    Returns ``(losses, examples)``; stops early at the end of the data (the
    last minibatch of an epoch may be smaller than ``batch_size``).
    """
    losses: list[float] = []
    examples = 0
    for k in range(first_batch, first_batch + n_batches):
        idx = order[k * batch_size:(k + 1) * batch_size]
        if len(idx) == 0:
            break
        losses.append(sgd_step(head, state, optimizer, X[idx], y[idx], l2))
        examples += len(idx)
    return losses, examples
