"""The softmax head and DL4J's Nesterovs updater (mr_tl.head)."""

import numpy as np
import pytest

from mr_tl.head import Nesterovs, SoftmaxHead, epoch_order, log_softmax, run_minibatches, sgd_step, softmax

F32 = np.float32


# -- Nesterovs -------------------------------------------------------------------


def test_nesterovs_matches_hand_worked_example():
    """DL4J: v_prev = v; v = mu*v - lr*g; params -= mu*v_prev - (1+mu)*v.   lr = 0.1, mu = 0.5.

    start   p0 = [ 1.0,  -2.0 ]   v0 = [0, 0]

    step 1  g1 = [ 0.5,  -1.0 ]
            v_prev = [0, 0]
            v1     = 0.5*[0, 0] - 0.1*[0.5, -1.0]             = [-0.05,  0.1 ]
            update = 0.5*[0, 0] - 1.5*[-0.05, 0.1]            = [ 0.075, -0.15]
            p1     = [1.0 - 0.075, -2.0 + 0.15]               = [ 0.925, -1.85]

    step 2  g2 = [ 0.2,   0.4 ]
            v_prev = [-0.05, 0.1]
            v2     = 0.5*[-0.05, 0.1] - 0.1*[0.2, 0.4]
                   = [-0.025 - 0.02, 0.05 - 0.04]              = [-0.045,  0.01 ]
            update = 0.5*[-0.05, 0.1] - 1.5*[-0.045, 0.01]
                   = [-0.025 + 0.0675, 0.05 - 0.015]           = [ 0.0425, 0.035]
            p2     = [0.925 - 0.0425, -1.85 - 0.035]           = [ 0.8825, -1.885]
    """
    opt = Nesterovs(lr=0.1, momentum=0.5)
    p = np.array([1.0, -2.0], dtype=F32)
    v = np.zeros(2, dtype=F32)
    p_id, v_id = id(p), id(v)

    opt.update(p, np.array([0.5, -1.0], dtype=F32), v)
    np.testing.assert_array_max_ulp(v, np.array([-0.05, 0.1], dtype=F32), maxulp=2)
    np.testing.assert_array_max_ulp(p, np.array([0.925, -1.85], dtype=F32), maxulp=2)

    opt.update(p, np.array([0.2, 0.4], dtype=F32), v)
    np.testing.assert_array_max_ulp(v, np.array([-0.045, 0.01], dtype=F32), maxulp=4)
    np.testing.assert_array_max_ulp(p, np.array([0.8825, -1.885], dtype=F32), maxulp=2)

    # in place, float32 throughout
    assert id(p) == p_id and id(v) == v_id
    assert p.dtype == F32 and v.dtype == F32


def test_nesterovs_is_not_classical_momentum():
    """The same two steps with classical momentum (p += v) would end at [0.88, -1.86]: a different answer."""
    opt = Nesterovs(lr=0.1, momentum=0.5)
    p = np.array([1.0, -2.0], dtype=F32)
    v = np.zeros(2, dtype=F32)
    for g in ([0.5, -1.0], [0.2, 0.4]):
        opt.update(p, np.array(g, dtype=F32), v)
    assert abs(float(p[0]) - 0.88) > 1e-3 and abs(float(p[1]) + 1.86) > 1e-3


def test_nesterovs_without_momentum_is_plain_sgd():
    g = np.random.default_rng(0).normal(size=(3, 4)).astype(F32)
    p = np.random.default_rng(1).normal(size=(3, 4)).astype(F32)
    expected = p - F32(0.05) * g
    v = np.zeros_like(p)
    Nesterovs(lr=0.05, momentum=0.0).update(p, g, v)
    assert p.tobytes() == expected.tobytes()


def test_nesterovs_defaults_and_validation():
    opt = Nesterovs()
    assert opt.lr == F32(0.01) and opt.momentum == F32(0.8)  # DL4J's defaults
    for bad in ({"lr": 0}, {"lr": -0.1}, {"momentum": 1.0}, {"momentum": -0.1}):
        with pytest.raises(ValueError, match="lr > 0 and 0 <= momentum < 1"):
            Nesterovs(**bad)


def test_step_updates_weights_and_bias_with_their_own_velocities():
    head = SoftmaxHead(np.ones((2, 3), dtype=F32), np.zeros(3, dtype=F32))
    opt = Nesterovs(lr=0.1, momentum=0.5)
    state = opt.init_state(head)
    assert state["vW"].shape == (2, 3) and state["vb"].shape == (3,)
    dW = np.full((2, 3), 2.0, dtype=F32)
    db = np.array([1.0, 0.0, -1.0], dtype=F32)
    opt.step(head, state, {"W": dW, "b": db})
    # first step from v = 0: v = -lr*g, params -= -(1+mu)*v = -(1.5 * 0.1 * g)
    np.testing.assert_array_max_ulp(head.W, np.full((2, 3), 1.0 - 0.3, dtype=F32), maxulp=2)
    np.testing.assert_array_max_ulp(head.b, np.array([-0.15, 0.0, 0.15], dtype=F32), maxulp=2)
    np.testing.assert_array_max_ulp(state["vb"], np.array([-0.1, 0.0, 0.1], dtype=F32), maxulp=2)


# -- softmax -----------------------------------------------------------------------


def test_softmax_and_log_softmax_are_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4],
                  [1e4, 1e4, 1e4],
                  [-1e4, -1e4, 1e4 - 1.0]], dtype=F32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = softmax(z)
        lp = log_softmax(z)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(lp))
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0, 0, 1]], atol=1e-7)
    np.testing.assert_allclose(lp, [[0, -1e4, -2e4], [-np.log(3)] * 3, [-19999, -19999, 0]], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert lp.dtype == F32


def test_loss_and_gradient_finite_for_huge_logits():
    head = SoftmaxHead(np.array([[1.0, -1.0, 0.0]], dtype=F32), np.zeros(3, dtype=F32))
    X = np.array([[1e4], [-1e4]], dtype=F32)
    y = np.array([1, 1])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, grads = head.loss_and_grad(X, y)
        dW, db = grads["W"], grads["b"]
        p = head.predict_proba(X)
    assert np.isfinite(loss) and np.all(np.isfinite(dW)) and np.all(np.isfinite(db)) and np.all(np.isfinite(p))
    # logits: row 0 [1e4, -1e4, 0] -> -log p[1] = 2e4; row 1 [-1e4, 1e4, 0] -> -log p[1] = 0
    assert loss == pytest.approx(1e4, rel=1e-6)


# -- gradient ------------------------------------------------------------------------


def _reference_loss(W, b, X, y, l2):
    """Mean NLL + l2/2 ||W||^2 in float64, written independently of mr_tl.head."""
    z = X @ W + b
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]) + 0.5 * l2 * np.sum(W * W))


@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_analytic_gradient_matches_finite_differences(l2):
    g = np.random.default_rng(3)
    n, d, c = 9, 5, 4
    W = g.normal(0, 0.5, (d, c)).astype(F32)
    b = g.normal(0, 0.5, c).astype(F32)
    X = g.normal(0, 1.0, (n, d)).astype(F32)
    y = g.integers(0, c, n)
    head = SoftmaxHead(W, b)
    loss, grads = head.loss_and_grad(X, y, l2)
    dW, db = grads["W"], grads["b"]
    assert dW.dtype == F32 and db.dtype == F32 and dW.shape == (d, c) and db.shape == (c,)

    W64, b64, X64 = W.astype(np.float64), b.astype(np.float64), X.astype(np.float64)
    assert loss == pytest.approx(_reference_loss(W64, b64, X64, y, l2), rel=1e-6)

    # the loss of a float64 copy of the head, as the finite-difference oracle
    copy = SoftmaxHead(W, b)

    def f(Wx, bx):
        copy.W, copy.b = Wx, bx
        return copy.loss_and_grad(X64, y, l2)[0]

    eps = 1e-6
    num_dW = np.zeros_like(W64)
    for i in range(d):
        for j in range(c):
            Wp, Wm = W64.copy(), W64.copy()
            Wp[i, j] += eps
            Wm[i, j] -= eps
            num_dW[i, j] = (f(Wp, b64) - f(Wm, b64)) / (2 * eps)
    num_db = np.zeros_like(b64)
    for j in range(c):
        bp, bm = b64.copy(), b64.copy()
        bp[j] += eps
        bm[j] -= eps
        num_db[j] = (f(W64, bp) - f(W64, bm)) / (2 * eps)
    np.testing.assert_allclose(dW, num_dW, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(db, num_db, rtol=1e-4, atol=1e-6)
    assert np.abs(num_dW).max() > 1e-2  # a gradient worth comparing


# -- Xavier ---------------------------------------------------------------------------


def test_xavier_is_seeded():
    a = SoftmaxHead.xavier(300, 7, seed=42)
    b = SoftmaxHead.xavier(300, 7, seed=42)
    c = SoftmaxHead.xavier(300, 7, seed=43)
    assert a.W.tobytes() == b.W.tobytes() and a.b.tobytes() == b.b.tobytes()
    assert not np.array_equal(a.W, c.W)
    assert abs(np.corrcoef(a.W.ravel(), c.W.ravel())[0, 1]) < 0.1  # an unrelated stream, not a shifted copy


def test_xavier_statistics_bias_and_dtype():
    fan_in, fan_out = 2000, 500
    head = SoftmaxHead.xavier(fan_in, fan_out, seed=5)
    W = head.W
    assert W.shape == (fan_in, fan_out) and W.dtype == F32 and W.flags.c_contiguous
    assert head.b.shape == (fan_out,) and head.b.dtype == F32 and not head.b.any()
    expected_var = 2.0 / (fan_in + fan_out)   # 8e-4; 1/fan_in would be 5e-4, 2/fan_in 1e-3
    n = W.size
    assert abs(W.mean(dtype=np.float64)) < 5 * np.sqrt(expected_var / n)
    assert W.var(dtype=np.float64) == pytest.approx(expected_var, rel=0.01)
    # Gaussian, not uniform: kurtosis ~3 (a uniform's is 1.8)
    w = W.astype(np.float64).ravel()
    assert np.mean(w ** 4) / np.mean(w ** 2) ** 2 == pytest.approx(3.0, abs=0.05)


# -- predict ----------------------------------------------------------------------------


def test_predict_checks_the_feature_dimension():
    head = SoftmaxHead.xavier(4096, 3, seed=0)
    X = np.zeros((2, 4095), dtype=F32)
    with pytest.raises(ValueError, match=r"X has 4095 features, but the head expects 4096"):
        head.predict(X)
    with pytest.raises(ValueError, match=r"X has 4095 features, but the head expects 4096"):
        head.predict_proba(X)
    with pytest.raises(ValueError, match=r"head expects 4096"):
        head.predict(np.zeros(4096, dtype=F32))  # one vector, not a batch
    ok = np.random.default_rng(0).normal(size=(2, 4096)).astype(F32)
    assert head.predict(ok).shape == (2,)
    np.testing.assert_allclose(head.predict_proba(ok).sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(head.predict(ok), np.argmax(ok @ head.W + head.b, axis=1))


def test_head_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="W must be"):
        SoftmaxHead(np.zeros((4, 3)), np.zeros(4))
    head = SoftmaxHead(np.zeros((4, 3), dtype=np.float64), np.zeros(3, dtype=np.float64))
    assert head.W.dtype == F32 and head.b.dtype == F32
    assert (head.n_features, head.n_classes) == (4, 3)


# -- schedule helpers -----------------------------------------------------------------------


def test_epoch_order_is_a_seeded_permutation_per_epoch_and_worker():
    a = epoch_order(50, 42, epoch=0, worker=0)
    assert sorted(a.tolist()) == list(range(50))
    assert np.array_equal(a, epoch_order(50, 42, 0, 0))
    assert not np.array_equal(a, epoch_order(50, 42, 1, 0))
    assert not np.array_equal(a, epoch_order(50, 42, 0, 1))
    assert not np.array_equal(a, epoch_order(50, 43, 0, 0))


def test_run_minibatches_covers_the_order_and_stops_at_the_end():
    g = np.random.default_rng(0)
    X = g.normal(size=(10, 3)).astype(F32)
    y = g.integers(0, 2, 10)
    order = epoch_order(10, 1, 0, 0)
    opt = Nesterovs(0.1, 0.8)

    head = SoftmaxHead.xavier(3, 2, seed=1)
    state = opt.init_state(head)
    losses, examples = run_minibatches(head, state, opt, X, y, order, 0, 5, 4)
    assert (len(losses), examples) == (3, 10)  # 4 + 4 + 2, then the data ends

    # the same three steps by hand, bit for bit
    ref = SoftmaxHead.xavier(3, 2, seed=1)
    ref_state = opt.init_state(ref)
    ref_losses = [sgd_step(ref, ref_state, opt, X[order[k:k + 4]], y[order[k:k + 4]]) for k in (0, 4, 8)]
    assert losses == ref_losses
    assert head.W.tobytes() == ref.W.tobytes() and state["vW"].tobytes() == ref_state["vW"].tobytes()

    # a round that starts at minibatch 2 runs only the last, short one
    head2 = SoftmaxHead.xavier(3, 2, seed=1)
    losses2, examples2 = run_minibatches(head2, opt.init_state(head2), opt, X, y, order, 2, 5, 4)
    assert (len(losses2), examples2) == (1, 2)
    # and past the end nothing at all
    losses3, examples3 = run_minibatches(head2, opt.init_state(head2), opt, X, y, order, 3, 5, 4)
    assert (losses3, examples3) == ([], 0)


# -- the hidden layer ---------------------------------------------------------------------------


@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_hidden_layer_gradient_matches_finite_differences(l2):
    from mr_tl.head import MLPHead

    g = np.random.default_rng(5)
    n, d, h, c = 7, 4, 6, 3
    head = MLPHead(g.normal(0, 0.7, (d, h)), g.normal(0, 0.3, h), g.normal(0, 0.7, (h, c)), g.normal(0, 0.3, c))
    X = g.normal(0, 1.0, (n, d)).astype(F32)
    y = g.integers(0, c, n)
    loss, grads = head.loss_and_grad(X, y, l2)
    assert sorted(grads) == ["W", "W1", "b", "b1"] and all(v.dtype == F32 for v in grads.values())
    params64 = {k: v.astype(np.float64) for k, v in head.params().items()}

    def f(params):
        copy = MLPHead(params["W1"], params["b1"], params["W"], params["b"])
        for k, v in params.items():   # keep float64 (the constructor stores float32)
            setattr(copy, k, v)
        return copy.loss_and_grad(X.astype(np.float64), y, l2)[0]

    assert loss == pytest.approx(f(params64), rel=1e-5)
    eps = 1e-6
    for name, value in params64.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            plus, minus = dict(params64), dict(params64)
            plus[name], minus[name] = value.copy(), value.copy()
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric[index] = (f(plus) - f(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-3, atol=1e-5, err_msg=name)


def test_a_hidden_layer_head_learns_what_a_linear_one_cannot():
    """XOR of two features: no linear head separates it, one hidden layer does."""
    from mr_tl.head import new_head

    g = np.random.default_rng(0)
    X = g.uniform(-1, 1, (400, 2)).astype(F32)
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(np.int64)
    accuracy = {}
    for hidden in (0, 16):
        head = new_head(2, 2, seed=1, hidden=hidden)
        opt = Nesterovs(lr=0.1, momentum=0.8)
        state = opt.init_state(head)
        for epoch in range(60):
            run_minibatches(head, state, opt, X, y, epoch_order(len(y), 1, epoch, 0), 0, 13, 32)
        accuracy[hidden] = float(np.mean(head.predict(X) == y))
    assert accuracy[0] < 0.7 and accuracy[16] > 0.9, accuracy
