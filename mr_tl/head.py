"""The new softmax head and its optimizer, in numpy (float32).

Mirrors the reference recipe's Deeplearning4j configuration: one
``OutputLayer`` D -> C with softmax activation and negative log-likelihood
loss averaged over the minibatch, ``WeightInit.XAVIER``, the ``Nesterovs``
updater, optional L2.

    head = SoftmaxHead.xavier(4096, 257, seed=42)
    opt = Nesterovs(lr=0.01, momentum=0.8)
    velocity = opt.init_state(head)
    loss = sgd_step(head, velocity, opt, X_batch, y_batch)
"""

import numpy as np

from mr_tl.seeding import rng

F32 = np.float32


class SoftmaxHead:
    """Softmax regression: ``p = softmax(X @ W + b)``.

    ``W`` is ``(n_features, n_classes)`` and ``b`` ``(n_classes,)``, both float32.
    """

    def __init__(self, W, b):
        W = np.asarray(W)
        b = np.asarray(b)
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ValueError("W must be (features, classes) and b (classes,), found %s and %s"
                             % (W.shape, b.shape))
        self.W = np.ascontiguousarray(W, dtype=F32)
        self.b = np.ascontiguousarray(b, dtype=F32)

    @classmethod
    def xavier(cls, n_features, n_classes, seed):
        """DL4J ``WeightInit.XAVIER``: W ~ N(0, 2 / (fan_in + fan_out)), b = 0, seeded."""
        std = np.sqrt(2.0 / (n_features + n_classes))
        W = rng(seed, "xavier").standard_normal((n_features, n_classes)) * std
        return cls(W.astype(F32), np.zeros(n_classes, dtype=F32))

    @property
    def n_features(self):
        return self.W.shape[0]

    @property
    def n_classes(self):
        return self.W.shape[1]

    def check_features(self, X):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError("X has %s features, but the head expects %d"
                             % (X.shape[1] if X.ndim == 2 else "?", self.n_features))
        return X

    def logits(self, X):
        return X @ self.W + self.b

    def predict_proba(self, X):
        return softmax(self.logits(self.check_features(X)))

    def predict(self, X):
        return np.argmax(self.logits(self.check_features(X)), axis=1)

    def loss_and_grad(self, X, y, l2=0.0):
        """Mean NLL over the minibatch (+ l2/2 * ||W||^2) and its gradient ``(loss, dW, db)``."""
        z = self.logits(X)
        log_p = log_softmax(z)
        n = len(y)
        rows = np.arange(n)
        loss = -float(np.mean(log_p[rows, y], dtype=np.float64))
        delta = np.exp(log_p)
        delta[rows, y] -= F32(1)
        delta /= F32(n)
        dW = X.T @ delta
        db = delta.sum(axis=0)
        if l2:
            loss += 0.5 * l2 * float(np.sum(np.square(self.W, dtype=np.float64)))
            dW += F32(l2) * self.W
        return loss, dW.astype(F32, copy=False), db.astype(F32, copy=False)


def log_softmax(z):
    """Numerically stable log-softmax along the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(z):
    return np.exp(log_softmax(z))


class Nesterovs:
    """DL4J's ``Nesterovs`` updater (lr 0.01, momentum 0.8 by default)::

        v_prev = v
        v      = momentum * v - lr * gradient
        params -= momentum * v_prev - (1 + momentum) * v

    (DL4J computes the update ``momentum * v_prev + (-1 - momentum) * v``
    and subtracts it from the parameters; so do we, in float32.)
    """

    def __init__(self, lr=0.01, momentum=0.8):
        if lr <= 0 or not 0 <= momentum < 1:
            raise ValueError("need lr > 0 and 0 <= momentum < 1, found lr=%r momentum=%r" % (lr, momentum))
        self.lr = F32(lr)
        self.momentum = F32(momentum)

    def init_state(self, head):
        return {"vW": np.zeros_like(head.W), "vb": np.zeros_like(head.b)}

    def update(self, param, grad, v):
        """Apply one step to ``param`` in place, updating velocity ``v`` in place."""
        v_prev = v.copy()
        v *= self.momentum
        v -= grad * self.lr
        update = v_prev * self.momentum + v * (-self.momentum - F32(1))
        param -= update

    def step(self, head, state, dW, db):
        self.update(head.W, dW, state["vW"])
        self.update(head.b, db, state["vb"])


def sgd_step(head, state, optimizer, X, y, l2=0.0):
    """One minibatch: gradient at the current parameters, then the update. Returns the loss."""
    loss, dW, db = head.loss_and_grad(X, y, l2)
    optimizer.step(head, state, dW, db)
    return loss


def epoch_order(n, seed, epoch, worker):
    """The order in which ``worker`` visits its ``n`` examples in ``epoch``."""
    return rng(seed, "shuffle", epoch, worker).permutation(n)


def run_minibatches(head, state, optimizer, X, y, order, first_batch, n_batches, batch_size, l2=0.0):
    """Minibatches ``first_batch .. first_batch + n_batches - 1`` of ``order``.

    Returns ``(losses, examples)``; stops early at the end of the data (the
    last minibatch of an epoch may be smaller than ``batch_size``).
    """
    losses, examples = [], 0
    for k in range(first_batch, first_batch + n_batches):
        idx = order[k * batch_size:(k + 1) * batch_size]
        if len(idx) == 0:
            break
        losses.append(sgd_step(head, state, optimizer, X[idx], y[idx], l2))
        examples += len(idx)
    return losses, examples
