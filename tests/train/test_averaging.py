"""Tree-ordered averaging (mr_tl.averaging) and the combiner/reducer that use it.

The promise: the same bits wherever the sums happen.  Leaves are merged all
at once, in shuffled order, or first in random groups by the real
``MRTrainRound.combiner`` (possibly several combiner passes, as Hadoop may
run it on spills) and then by the reducer: the root, and the mean, must be
identical byte for byte.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mr_tl import averaging
from mr_tl.averaging import OuterOptimizer, default_block_momentum, leaf, mean_of, merge, tree_height
from mr_tl.jobs.train_round import MRTrainRound, decode_contribution, encode_contribution
from mr_tl.training.hyperparameters import Hyperparameters
from mr_tl.training.round import RoundSpec, finish_round

SHAPES = {"W": (3, 5), "b": (5,), "vW": (3, 5), "vb": (5,)}


def random_values(g):
    """float32 arrays over many magnitudes, so float64 sums round and order would matter."""
    return {name: (g.normal(size=shape) * 10.0 ** g.uniform(-4, 4, size=shape)).astype(np.float32)
            for name, shape in SHAPES.items()}


def random_leaves(g, n_workers, min_examples=1):
    values = [random_values(g) for _ in range(n_workers)]
    counts = [int(g.integers(min_examples, 1000)) for _ in range(n_workers)]
    losses = [list(g.uniform(0, 3, int(g.integers(0, 4)))) for _ in range(n_workers)]
    return [leaf(w, counts[w], values[w], losses[w]) for w in range(n_workers)], values, counts


def root_bytes(node):
    return (node.level, node.index, node.examples, {k: v.tobytes() for k, v in sorted(node.sums.items())},
            sorted(node.losses.items()))


def mean_bytes(mean):
    return {k: (v.dtype.str, v.tobytes()) for k, v in sorted(mean.items())}


_JOBS = {}


def combiner_job(n_workers):
    if n_workers not in _JOBS:
        _JOBS[n_workers] = MRTrainRound(args=["--workers", str(n_workers)])
    return _JOBS[n_workers]


def through_combiners(g, leaves, values, n_workers, passes):
    """Leaf lines -> ``passes`` rounds of the real combiner on random groups -> contributions for the reducer."""
    pool = [encode_contribution(c, values[c.index]) for c in leaves]
    job = combiner_job(n_workers)
    for _ in range(passes):
        g.shuffle(pool)
        cuts = sorted(set(g.integers(0, len(pool) + 1, size=int(g.integers(0, len(pool) + 1)))))
        groups = [pool[a:b] for a, b in zip([0] + cuts, cuts + [len(pool)]) if b > a]
        pool = [line for group in groups for _, line in job.combiner("round", iter(group))]
    g.shuffle(pool)
    return [decode_contribution(line)[0] for line in pool]


@settings(max_examples=60, deadline=None, database=None)
@given(n_workers=st.integers(1, 9), seed=st.integers(0, 2 ** 32 - 1), passes=st.integers(1, 3))
def test_merge_is_order_and_grouping_independent_bit_for_bit(n_workers, seed, passes):
    g = np.random.default_rng(seed)
    leaves, values, counts = random_leaves(g, n_workers)

    (reference,) = merge(leaves, n_workers)
    assert (reference.level, reference.index) == (tree_height(n_workers), 0)
    assert reference.examples == sum(counts)
    expected = root_bytes(reference)
    expected_mean = mean_bytes(mean_of(reference, n_workers))

    shuffled = list(leaves)
    g.shuffle(shuffled)
    (root,) = merge(shuffled, n_workers)
    assert root_bytes(root) == expected

    (root,) = merge(list(reversed(leaves)), n_workers)
    assert root_bytes(root) == expected

    # random subsets merged first (combiners), then everything (the reducer)
    contributions = through_combiners(g, leaves, values, n_workers, passes)
    (root,) = merge(contributions, n_workers)
    assert root_bytes(root) == expected
    assert mean_bytes(mean_of(root, n_workers)) == expected_mean

    # and the reducer's code path gives the same mean
    state = {k: np.zeros(s, dtype=np.float32) for k, s in SHAPES.items()}
    new_arrays, meta = finish_round(contributions, {}, state, Hyperparameters(workers=n_workers), RoundSpec())
    assert mean_bytes(new_arrays) == expected_mean
    assert meta["examples"] == sum(counts)


def test_the_data_would_expose_a_naive_order_dependent_sum():
    """Sanity check of the test data: plain sums in different orders do differ in the last bits."""
    g = np.random.default_rng(7)
    leaves, _, _ = random_leaves(g, 9)
    sums = set()
    for _ in range(20):
        order = g.permutation(9)
        total = np.zeros(SHAPES["W"])
        for i in order:
            total = total + leaves[i].sums["W"]
        sums.add(total.tobytes())
    assert len(sums) > 1


def test_mean_is_the_example_weighted_mean():
    g = np.random.default_rng(1)
    leaves, values, counts = random_leaves(g, 5)
    (root,) = merge(leaves, 5)
    mean = mean_of(root, 5)
    for name in SHAPES:
        expected = sum(np.float64(n) * values[w][name].astype(np.float64) for w, n in enumerate(counts)) / sum(counts)
        np.testing.assert_allclose(mean[name], expected.astype(np.float32), rtol=1e-6)
        assert mean[name].dtype == np.float32


@pytest.mark.parametrize("n_workers", range(2, 10))
def test_a_missing_worker_is_never_averaged(n_workers):
    g = np.random.default_rng(n_workers)
    leaves, _, _ = random_leaves(g, n_workers)
    state = {k: np.zeros(s, dtype=np.float32) for k, s in SHAPES.items()}
    for missing in range(n_workers):
        present = [c for c in leaves if c.index != missing]
        merged = merge(present, n_workers)
        for node in merged:
            with pytest.raises(ValueError, match="incomplete round"):
                mean_of(node, n_workers)
        with pytest.raises(ValueError, match="round is missing workers|incomplete round"):
            finish_round(present, {}, state, Hyperparameters(workers=n_workers), RoundSpec())


def test_a_contribution_given_twice_is_an_error():
    g = np.random.default_rng(2)
    leaves, _, _ = random_leaves(g, 4)
    with pytest.raises(ValueError, match="given twice"):
        merge(leaves + [leaves[2]], 4)
    (node01,) = [n for n in merge(leaves[:2], 4)]
    with pytest.raises(ValueError, match="given twice"):
        merge([node01, node01] + leaves[2:], 4)
    # a leaf that a combiner already summed, sent again without its sibling: not a complete round
    state = {k: np.zeros(s, dtype=np.float32) for k, s in SHAPES.items()}
    with pytest.raises(ValueError):
        finish_round([node01, leaves[1]] + leaves[2:], {}, state, Hyperparameters(workers=4), RoundSpec())


def test_a_summed_node_together_with_its_own_leaves_is_an_error():
    g = np.random.default_rng(3)
    leaves, _, _ = random_leaves(g, 4)
    (node01,) = merge(leaves[:2], 4)
    with pytest.raises(ValueError, match="given twice"):
        merge(leaves + [node01], 4)


def test_zero_example_workers_do_not_change_the_result():
    g = np.random.default_rng(4)
    for n_workers in range(2, 10):
        leaves, values, counts = random_leaves(g, n_workers)
        empty = int(g.integers(0, n_workers))
        a = list(leaves)
        b = list(leaves)
        a[empty] = leaf(empty, 0, random_values(g))
        b[empty] = leaf(empty, 0, random_values(g))
        (ra,) = merge(a, n_workers)
        (rb,) = merge(b, n_workers)
        assert {k: v.tobytes() for k, v in ra.sums.items()} == {k: v.tobytes() for k, v in rb.sums.items()}
        assert ra.examples == sum(counts) - counts[empty]
        assert mean_bytes(mean_of(ra, n_workers)) == mean_bytes(mean_of(rb, n_workers))

        # workers with nothing to do appended after the others: the same bits as without them
        extra = int(g.integers(1, 4))
        padded = leaves + [leaf(n_workers + i, 0, random_values(g)) for i in range(extra)]
        (rp,) = merge(padded, n_workers + extra)
        (r0,) = merge(leaves, n_workers)
        assert mean_bytes(mean_of(rp, n_workers + extra)) == mean_bytes(mean_of(r0, n_workers))


def test_a_round_where_nobody_trained_is_an_error():
    g = np.random.default_rng(5)
    leaves = [leaf(w, 0, random_values(g)) for w in range(3)]
    (root,) = merge(leaves, 3)
    with pytest.raises(ValueError, match="no worker trained"):
        mean_of(root, 3)


def test_one_worker_mean_is_the_worker_values_exactly():
    g = np.random.default_rng(6)
    for examples in (1, 3, 37, 1000, 2 ** 20 + 1):
        values = random_values(g)
        merged = merge([leaf(0, examples, values, [0.5])], 1)
        assert len(merged) == 1
        mean = mean_of(merged[0], 1)
        assert mean_bytes(mean) == mean_bytes(values)


# -- the outer optimizer --------------------------------------------------------------


def test_block_momentum_with_eta_0_and_zeta_1_is_plain_averaging_bit_for_bit():
    g = np.random.default_rng(8)
    plain = OuterOptimizer("average")
    bm = OuterOptimizer("block-momentum", block_momentum=0.0, block_lr=1.0, n_workers=4)
    params = random_values(g)
    state = dict(params)
    state.update(bm.initial_state(params))
    assert state["start_W"].tobytes() == params["W"].tobytes()
    for _ in range(6):
        # the workers' mean: somewhere near where they started
        start = {"W": state["start_W"], "b": state["start_b"]}
        mean = {k: (start[k] + g.normal(size=start[k].shape).astype(np.float32) * np.float32(0.01)
                    if k in start else g.normal(size=SHAPES[k]).astype(np.float32)) for k in SHAPES}
        expected, outer_plain = plain.apply(mean, {})
        assert outer_plain == {}
        out, outer = bm.apply(mean, state)
        assert mean_bytes({k: out[k] for k in SHAPES}) == mean_bytes(expected)
        assert outer["start_W"].tobytes() == out["W"].tobytes()  # eta = 0: no look-ahead
        state = dict(out)
        state.update(outer)


def test_block_momentum_hand_worked():
    """eta = 0.5, zeta = 1; w0 = start0 = 1, G0 = 0.

    round 1: mean 2.0 -> G1 = 0.5*0 + (2.0 - 1.0) = 1.0; w1 = 1 + 1 = 2.0; start1 = 2 + 0.5*1 = 2.5
    round 2: mean 2.0 -> G2 = 0.5*1 + (2.0 - 2.5) = 0.0; w2 = 2 + 0 = 2.0; start2 = 2.0
    """
    bm = OuterOptimizer("block-momentum", block_momentum=0.5, block_lr=1.0)
    one = {"W": np.array([[1.0]], dtype=np.float32), "b": np.array([1.0], dtype=np.float32)}
    state = dict(one, vW=np.zeros((1, 1), np.float32), vb=np.zeros(1, np.float32))
    state.update(bm.initial_state(one))
    mean = {"W": np.array([[2.0]], dtype=np.float32), "b": np.array([2.0], dtype=np.float32),
            "vW": np.array([[0.25]], dtype=np.float32), "vb": np.array([0.25], dtype=np.float32)}
    out, outer = bm.apply(mean, state)
    assert float(out["W"][0, 0]) == 2.0 and float(outer["G_W"][0, 0]) == 1.0 and float(outer["start_W"][0, 0]) == 2.5
    assert float(out["vW"][0, 0]) == 0.25  # optimizer state: the plain mean
    state = dict(out, **outer)
    out, outer = bm.apply(mean, state)
    assert float(out["W"][0, 0]) == 2.0 and float(outer["G_W"][0, 0]) == 0.0 and float(outer["start_W"][0, 0]) == 2.0


def test_default_block_momentum_is_one_minus_one_over_workers():
    for workers, eta in ((1, 0.0), (2, 0.5), (4, 0.75), (8, 0.875), (10, 0.9)):
        assert default_block_momentum(workers) == pytest.approx(eta)
        assert OuterOptimizer("block-momentum", n_workers=workers).eta == pytest.approx(eta)
    assert OuterOptimizer("block-momentum", block_momentum=0.3, n_workers=8).eta == 0.3
    for bad in ({"block_momentum": 1.0}, {"block_momentum": -0.1}, {"block_lr": 0.0}):
        with pytest.raises(ValueError):
            OuterOptimizer("block-momentum", n_workers=2, **bad)
    with pytest.raises(ValueError, match="outer optimizer"):
        OuterOptimizer("adam")


def test_contribution_meta_round_trip():
    g = np.random.default_rng(9)
    leaves, values, _ = random_leaves(g, 3)
    (node,) = merge(leaves[:2], 3)
    line = encode_contribution(node)
    back, leaf_values = decode_contribution(line)
    assert leaf_values is None
    assert root_bytes(back) == root_bytes(node)
    back_leaf, back_values = decode_contribution(encode_contribution(leaves[2], values[2]))
    assert root_bytes(back_leaf) == root_bytes(leaves[2])
    assert mean_bytes(back_values) == mean_bytes(values[2])
    assert averaging.Contribution.from_meta(node.to_meta(), node.sums).first_worker == 0
