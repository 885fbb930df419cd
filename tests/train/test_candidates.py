"""Candidates (several heads side by side, chosen on validation) and recipes, through the train driver.

What is compared bit for bit: the round jobs (local runner, with a combiner) against the inline runner and
the in-process runner; each candidate of a grid against a run of that candidate alone; a resumed grid run
against an uninterrupted one; ``--recipe reference`` against today's defaults given as flags and against
an independent numpy implementation of the reference recipe.
"""

import hashlib
import json
import os
import re
import warnings

import numpy as np
import pytest

from mr_tl.feature_store import read_folder
from mr_tl.records import load_npz
from mr_tl.run_dir import RunDir
from mr_tl.training.hyperparameters import (
    FIELDS,
    GRID_FIELDS,
    NAMES,
    RECIPES,
    Candidates,
    Grid,
    Hyperparameters,
    parse_frequency,
    resolve,
)
from mr_tl.training.in_process import InProcessRunner
from mr_tl.training.loop import Schedule, Trainer

from .test_train import checkpoint, checkpoint_files, head_bytes, metrics, without_seconds

GRID = "lr=0.01,0.05 hidden=0,4"   # 4 candidates: (0.01, 0), (0.01, 4), (0.05, 0), (0.05, 4)


def candidate(arrays, i):
    """Candidate ``i``'s arrays of a grid run's state, without their prefix."""
    return {k[len("c%d/" % i):]: v for k, v in arrays.items() if k.startswith("c%d/" % i)}


def as_bytes(arrays):
    return {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in arrays.items()}


def same_head(run_a, run_b):
    """The same head arrays and meta, but for the inputs' description (a runner's own)."""
    (meta_a, a), (meta_b, b) = (load_npz(os.path.join(str(run), "head.npz")) for run in (run_a, run_b))
    meta_a.pop("features"), meta_b.pop("features")
    return as_bytes(a) == as_bytes(b) and meta_a == meta_b


def in_process(features_dir, run_dir, epochs, validate_every=0, recipe="default", **given):
    """A run with the in-process runner, values resolved as the train command resolves its flags."""
    candidates = resolve(recipe, given)
    Trainer(InProcessRunner(read_folder(features_dir)), str(run_dir), candidates,
            Schedule(epochs=epochs, validate_every=validate_every), out=lambda m: None, recipe=recipe).run_all()
    return RunDir(str(run_dir))


# -- the same bits everywhere -----------------------------------------------------------------------------------------


def test_candidates_give_the_same_bits_in_jobs_in_process_and_alone(synth, train_cli, tmp_path, all_bytes):
    """3 workers in 2 map tasks (the combiner adds up grid leaves), z-score shared, a hidden layer in the grid."""
    args = ("--workers", 3, "--averaging-frequency", "epoch", "--epochs", 2, "--normalization", "zscore",
            "--candidates", GRID, "--validate-every", 1)
    result = train_cli("-r", "local", synth.path, "-o", tmp_path / "local", "--tasks", 2, *args)
    assert result.code == 0, result.err
    assert "4 candidates (lr=0.01,0.05 hidden=0,4)" in result.out
    assert train_cli("-r", "inline", synth.path, "-o", tmp_path / "inline", *args).code == 0
    memory = in_process(synth.path, tmp_path / "memory", 2, 1, workers=3, averaging_frequency=0,
                        normalization="zscore", candidates=GRID)
    local = checkpoint_files(all_bytes, tmp_path / "local")
    assert len(local) == 2 * 3
    assert checkpoint_files(all_bytes, tmp_path / "inline") == local
    assert checkpoint_files(all_bytes, memory.path) == local
    assert head_bytes(tmp_path / "inline") == head_bytes(tmp_path / "local")
    assert same_head(tmp_path / "local", memory.path)
    assert without_seconds(metrics(tmp_path / "inline")) == without_seconds(metrics(tmp_path / "local")) \
        == without_seconds(metrics(memory.path))

    # the state layout: every candidate's arrays under c<i>/, and which are dropped
    _, state = checkpoint(tmp_path / "local", 2)
    assert "dropped" in state and state["dropped"].tolist() == [0, 0, 0, 0]
    assert set(candidate(state, 0)) == {"W", "b", "vW", "vb", "start_W", "start_b", "G_W", "G_b"}
    assert set(candidate(state, 1)) == {"W1", "b1", "W", "b", "vW1", "vb1", "vW", "vb",
                                        "start_W1", "start_b1", "start_W", "start_b", "G_W1", "G_b1", "G_W", "G_b"}
    assert len(state) == 1 + 2 * 8 + 2 * 16

    # each candidate alone, for the same rounds: the same arrays, losses and scores, bit for bit
    config = json.load(open(tmp_path / "local" / "config.json"))
    assert [(c["index"], c["lr"], c["hidden"]) for c in config["candidates"]] == [
        (0, 0.01, 0), (1, 0.01, 4), (2, 0.05, 0), (3, 0.05, 4)]
    grid_metrics = metrics(tmp_path / "local")
    for c in config["candidates"]:
        i = c["index"]
        alone = in_process(synth.path, tmp_path / ("alone%d" % i), 2, 1, workers=3, averaging_frequency=0,
                           normalization="zscore", lr=c["lr"], hidden=c["hidden"])
        assert alone.checkpoint_rounds() == [0, 1, 2]
        for r in alone.checkpoint_rounds():
            mine = alone.load_checkpoint(r)[1]
            assert "dropped" not in mine and not any("/" in k for k in mine)   # one candidate: today's names
            assert as_bytes(candidate(checkpoint(tmp_path / "local", r)[1], i)) == as_bytes(mine), (i, r)
        for grid_line, alone_line in zip(grid_metrics, alone.read_metrics()):
            entry = grid_line["candidates"][i]
            assert entry["losses"] == alone_line["losses"] and entry["loss"] == alone_line["loss"]
            for key in ("val_accuracy", "val_loss", "train_accuracy", "train_loss"):
                assert entry[key] == alone_line[key], (i, key)


# -- the choice on validation -----------------------------------------------------------------------------------------


def test_the_best_candidate_on_validation_is_the_head(synth, train_cli, tmp_path):
    """lr 1e-5 barely leaves the initial weights; lr 0.05 learns: the second is chosen, and said so."""
    run = tmp_path / "run"
    result = train_cli("-r", "inline", synth.path, "-o", run, "--workers", 2, "--epochs", 3,
                       "--candidates", "lr=1e-5,0.05")
    assert result.code == 0, result.err
    lines = metrics(run)
    # without --validate-every, candidates are validated after the last round (one score-only job)
    assert [("val_accuracy" in m) for m in lines] == [False, False, True]
    last = lines[-1]
    bad, good = last["candidates"]
    assert good["val_accuracy"] > bad["val_accuracy"] + 0.3, (bad, good)
    assert last["best_candidate"] == 1
    for key in ("val_accuracy", "val_loss", "train_accuracy", "train_loss", "losses", "loss"):
        assert last[key] == good[key], key
    assert "best: candidate 1 (lr=0.05)" in result.out.splitlines()[-3]
    assert "chose candidate 1 of 2 (lr=0.05) on validation" in result.out

    meta, head = load_npz(str(run / "head.npz"))
    _, state = checkpoint(run, 3)
    assert set(head) == {"W", "b"}
    assert head["W"].tobytes() == state["c1/W"].tobytes() and head["b"].tobytes() == state["c1/b"].tobytes()
    assert meta["round"] == 3 and meta["training"]["lr"] == 0.05
    assert meta["candidate"]["index"] == 1 and meta["candidate"]["lr"] == 0.05 and meta["candidate"]["of"] == 2
    assert meta["candidate"]["grid"] == "lr=1e-05,0.05"
    _, X_val, y_val = synth.split("val")
    assert last["val_accuracy"] == pytest.approx(float(np.mean(np.argmax(X_val @ head["W"] + head["b"], 1) == y_val)))
    head_, _ = RunDir(str(run)).load_head()   # evaluate, export and predict read it as any head
    assert head_.n_classes == len(synth.classes)


def test_with_early_stopping_the_head_is_the_best_round_and_candidate(synth, train_cli, tmp_path):
    run = tmp_path / "run"
    result = train_cli("-r", "inline", synth.path, "-o", run, "--workers", 2, "--epochs", 8, "--batch-size", 16,
                       "--validate-every", 1, "--early-stopping", 2, "--candidates", "lr=0.003,0.1")
    assert result.code == 0, result.err
    best = None   # the best (accuracy, round, candidate) in metrics.jsonl: ties to the earlier round, lower index
    for m in metrics(run):
        for c in m["candidates"]:
            if best is None or c["val_accuracy"] > best[0]:
                best = (c["val_accuracy"], m["round"], c["candidate"])
    meta, head = load_npz(str(run / "head.npz"))
    assert (meta["round"], meta["candidate"]["index"]) == best[1:]
    assert head["W"].tobytes() == checkpoint(run, best[1])[1]["c%d/W" % best[2]].tobytes()


def test_ties_go_to_the_lower_index(synth, train_cli, tmp_path):
    """Two learning rates that are one float32: the same training, the same scores; the first is chosen."""
    run = tmp_path / "run"
    result = train_cli("-r", "inline", synth.path, "-o", run, "--workers", 2, "--epochs", 2,
                       "--candidates", "lr=0.05000000000000001,0.05")
    assert result.code == 0, result.err
    _, state = checkpoint(run, 2)
    assert state["c0/W"].tobytes() == state["c1/W"].tobytes()
    last = metrics(run)[-1]
    assert last["candidates"][0]["val_accuracy"] == last["candidates"][1]["val_accuracy"]
    assert last["best_candidate"] == 0 and load_npz(str(run / "head.npz"))[0]["candidate"]["index"] == 0


def test_the_choice_ties_to_the_earlier_round_and_skips_dropped_candidates(synth, tmp_path):
    trainer = Trainer(None, str(tmp_path / "run"), resolve("default", {"candidates": "lr=0.01,0.02,0.03"}))
    trainer.arrays = {"dropped": np.array([0, 0, 3])}
    trainer.history = [(1, {0: 0.5, 1: 0.7, 2: 0.9}), (2, {0: 0.7, 1: 0.6}), (3, {0: 0.6, 1: 0.7})]
    assert trainer._choice() == (0.7, 1, 1)      # candidate 2's 0.9 does not count: it diverged
    assert trainer._best_of({0: 0.7, 1: 0.7}) == 0
    assert trainer._leader() == 1                 # the best on the latest validation


# -- divergence -------------------------------------------------------------------------------------------------------

DIVERGING = ("--workers", 2, "--averaging-frequency", 2, "--batch-size", 16, "--epochs", 2, "--validate-every", 2,
             "--outer-optimizer", "block-momentum")
# 10 rounds; with lr 1e37 the parameters overflow in round 4 (lr 0.05 learns)


def test_a_diverging_candidate_is_dropped_and_the_others_train_on(synth, train_cli, tmp_path):
    run, alone = tmp_path / "run", tmp_path / "alone"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_cli("-r", "inline", synth.path, "-o", run, *DIVERGING, "--candidates", "lr=0.05,1e37")
    assert result.code == 0, result.err
    said = re.search(r"^candidate 1 \(lr=1e\+37\) diverged in round 4 \(loss nan, non-finite ([^)]*)\): dropped; "
                     r"it stays as after round 3, is not trained further and cannot be chosen$", result.out, re.M)
    assert said and said.group(1) == "W, b, vW, vb, G_W, G_b, start_W, start_b"
    assert "chose candidate 0 of 2 (lr=0.05) on validation: 0 0.9" in result.out
    assert "1 dropped in round 4" in result.out
    rd = RunDir(str(run))
    assert rd.checkpoint_rounds() == list(range(11))
    frozen = candidate(rd.load_checkpoint(3)[1], 1)
    for r in rd.checkpoint_rounds():
        _, state = rd.load_checkpoint(r)
        assert all(np.all(np.isfinite(a)) for a in state.values())
        assert state["dropped"].tolist() == ([0, 4] if r >= 4 else [0, 0])
        if r >= 3:
            assert as_bytes(candidate(state, 1)) == as_bytes(frozen)
    lines = metrics(run)
    assert [("dropped" in m["candidates"][1]) for m in lines] == [False] * 3 + [True] * 7
    assert lines[3]["candidates"][1]["dropped"] == 4 and None in lines[3]["candidates"][1]["losses"]
    assert all("losses" not in m["candidates"][1] for m in lines[4:])
    validated = [m for m in lines if "val_accuracy" in m]
    assert [m["round"] for m in validated] == [2, 4, 6, 8, 10]
    assert "val_accuracy" in validated[0]["candidates"][1]                 # scored while it trained
    assert all("val_accuracy" not in m["candidates"][1] for m in validated[1:])   # not after
    assert all(m["best_candidate"] == 0 for m in lines[3:])
    # the candidate left trains on exactly as it would alone
    assert train_cli("-r", "inline", synth.path, "-o", alone, *DIVERGING, "--lr", 0.05).code == 0
    for r in rd.checkpoint_rounds():
        assert as_bytes(candidate(rd.load_checkpoint(r)[1], 0)) == as_bytes(checkpoint(alone, r)[1]), r
    assert head_bytes(alone) != head_bytes(run)   # the same arrays, but the head's meta names the candidate
    assert load_npz(str(run / "head.npz"))[1]["W"].tobytes() == load_npz(str(alone / "head.npz"))[1]["W"].tobytes()


def test_training_stops_when_every_candidate_has_diverged(synth, train_cli, tmp_path):
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_cli("-r", "inline", synth.path, "-o", run, *DIVERGING, "--candidates", "lr=1e37,1e38")
    assert result.code == 1
    assert "candidate 1 (lr=1e+38) diverged in round 1" in result.out
    assert "training diverged in round 4: no candidate is left (candidate 0 (lr=1e+37): loss nan" in result.err
    assert "the last good checkpoint (round 3) is kept" in result.err
    rd = RunDir(str(run))
    assert rd.checkpoint_rounds() == [0, 1, 2, 3] and not os.path.exists(run / "head.npz")
    assert [m["round"] for m in metrics(run)] == [1, 2, 3]


# -- resume -----------------------------------------------------------------------------------------------------------


def test_resume_with_candidates_is_bit_identical_and_refuses_another_grid(synth, train_cli, tmp_path, all_bytes,
                                                                         snapshot):
    args = ("-r", "inline", synth.path, *DIVERGING, "--candidates", "lr=0.05,1e37")
    whole = tmp_path / "whole"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train_cli(*args, "-o", whole).code == 0
        # stop before the drop, on the validated round where it happens (its line waits for its validation),
        # and after it
        for stop in (3, 4, 5):
            part = tmp_path / ("part%d" % stop)
            assert train_cli(*args, "-o", part, "--stop-after-rounds", stop).code == 0
            assert not (part / "head.npz").exists()
            result = train_cli(*args, "-o", part, "--resume")
            assert result.code == 0, result.err
            assert "resuming after round %d" % stop in result.out
            assert head_bytes(part) == head_bytes(whole)
            assert checkpoint_files(all_bytes, part) == checkpoint_files(all_bytes, whole)
            assert without_seconds(metrics(part)) == without_seconds(metrics(whole))

    stopped = tmp_path / "stopped"
    assert train_cli(*args, "-o", stopped, "--stop-after-rounds", 2).code == 0
    before = snapshot(str(stopped))
    other = list(args)
    other[other.index("--candidates") + 1] = "lr=0.05,0.1"
    result = train_cli(*other, "-o", stopped, "--resume")
    assert result.code == 2
    assert "cannot resume" in result.err and "candidates was 'lr=0.05,1e+37', now 'lr=0.05,0.1'" in result.err
    result = train_cli(*args[:-2], "--lr", 0.05, "-o", stopped, "--resume")   # one candidate of the grid
    assert result.code == 2 and "candidates was 'lr=0.05,1e+37', now 'none'" in result.err
    assert snapshot(str(stopped)) == before


def test_a_run_made_before_recipes_resumes_with_the_reference_recipe(synth, train_cli, tmp_path, all_bytes):
    """Its config.json has no recipe and no candidates: it holds the reference values, which it names."""
    args = ("-r", "inline", synth.path, "--workers", 2, "--epochs", 2)
    whole, old = tmp_path / "whole", tmp_path / "old"
    assert train_cli(*args, "-o", whole, "--recipe", "reference").code == 0
    assert train_cli(*args, "-o", old, "--recipe", "reference", "--stop-after-rounds", 1).code == 0
    config = json.load(open(old / "config.json"))
    del config["recipe"], config["candidates"], config["training"]["candidates"]
    (old / "config.json").write_text(json.dumps(config))
    result = train_cli(*args, "-o", old, "--resume")
    assert result.code == 2 and "cannot resume: the configuration differs" in result.err
    assert "add --recipe reference" in result.err
    result = train_cli(*args, "-o", old, "--resume", "--recipe", "reference")
    assert result.code == 0, result.err
    assert checkpoint_files(all_bytes, old) == checkpoint_files(all_bytes, whole)
    assert head_bytes(old) == head_bytes(whole)


# -- recipes ----------------------------------------------------------------------------------------------------------

REFERENCE_FLAGS = ("--seed", 42, "--workers", 2, "--averaging-frequency", 5, "--batch-size", 32, "--lr", 0.01,
                   "--momentum", 0.8, "--l2", 0, "--outer-optimizer", "average", "--block-lr", 1, "--hidden", 0,
                   "--normalization", "none", "--candidates", "none")   # today's defaults, given one by one


def _rng(seed, *keys):
    """mr_tl's seeded streams, as documented: SeedSequence of the sha256 of repr((seed,) + keys)."""
    digest = hashlib.sha256(repr((int(seed),) + tuple(keys)).encode("utf-8")).digest()
    return np.random.default_rng(np.random.SeedSequence(np.frombuffer(digest, dtype="<u4").tolist()))


def reference_in_numpy(synth, epochs, seed=42, workers=2, K=5, batch=32, lr=0.01, momentum=0.8):
    """The reference recipe written out in numpy, independently of mr_tl's training code: Xavier init,
    DL4J's Nesterovs per worker on its minibatches, example-weighted float64 averaging of parameters and
    velocities every K minibatches.  Returns the state ``{W, b, vW, vb}`` after every round (round 0 too)."""
    f32 = np.float32
    ids, X, y = synth.train_sorted_by_id()
    worker = np.array([int.from_bytes(hashlib.sha256(b"mr_tl.worker\0%d\0%s" % (seed, i.encode())).digest()[:8],
                                      "little") % workers for i in ids])
    data = [(X[worker == w], y[worker == w]) for w in range(workers)]
    dim, classes = X.shape[1], len(synth.classes)
    W = (_rng(seed, "xavier").standard_normal((dim, classes)) * np.sqrt(2.0 / (dim + classes))).astype(f32)
    state = {"W": W, "b": np.zeros(classes, f32), "vW": np.zeros_like(W), "vb": np.zeros(classes, f32)}
    states = [state]
    per_epoch = max(1, -(-max(-(-len(yw) // batch) for _, yw in data) // K))
    m, eta = f32(momentum), f32(lr)
    for r in range(epochs * per_epoch):
        epoch, first = r // per_epoch, (r % per_epoch) * K
        sums, total = {}, 0
        for w, (Xw, yw) in enumerate(data):
            p = {k: v.copy() for k, v in state.items()}
            order = _rng(seed, "shuffle", epoch, w).permutation(len(yw))
            seen = 0
            for k in range(first, first + K):
                idx = order[k * batch:(k + 1) * batch]
                if not len(idx):
                    break
                z = Xw[idx] @ p["W"] + p["b"]
                z = z - z.max(axis=1, keepdims=True)
                delta = np.exp(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))
                delta[np.arange(len(idx)), yw[idx]] -= f32(1)
                delta /= f32(len(idx))
                for name, grad in (("W", (Xw[idx].T @ delta).astype(f32)), ("b", delta.sum(axis=0).astype(f32))):
                    v_prev = p["v" + name].copy()
                    p["v" + name] *= m
                    p["v" + name] -= grad * eta
                    p[name] -= v_prev * m + p["v" + name] * (-m - f32(1))
                seen += len(idx)
            for name, value in p.items():   # the averaging tree of two workers: leaf 0 + leaf 1
                part = value.astype(np.float64) * np.float64(seen)
                sums[name] = part if name not in sums else sums[name] + part
            total += seen
        state = {name: (s / np.float64(total)).astype(f32) for name, s in sums.items()}
        states.append(state)
    return states


def state_digest(arrays):
    return hashlib.sha256(b"".join(arrays[name].tobytes() for name in ("W", "b", "vW", "vb"))).hexdigest()


def test_the_reference_recipe_is_todays_defaults_bit_for_bit(synth, train_cli, tmp_path, all_bytes):
    common = ("-r", "inline", synth.path, "--epochs", 2, "--validate-every", 1)
    result = train_cli(*common, "-o", tmp_path / "recipe", "--recipe", "reference")
    assert result.code == 0, result.err
    assert train_cli(*common, "-o", tmp_path / "flags", *REFERENCE_FLAGS).code == 0
    assert checkpoint_files(all_bytes, tmp_path / "recipe") == checkpoint_files(all_bytes, tmp_path / "flags")
    assert head_bytes(tmp_path / "recipe") == head_bytes(tmp_path / "flags")
    assert without_seconds(metrics(tmp_path / "recipe")) == without_seconds(metrics(tmp_path / "flags"))
    recipe, flags = (json.load(open(tmp_path / run / "config.json")) for run in ("recipe", "flags"))
    assert (recipe["recipe"], flags["recipe"]) == ("reference", "default")
    assert recipe["training"] == flags["training"]

    # the checkpoints are the reference recipe's arithmetic, computed here without mr_tl's training code
    states = reference_in_numpy(synth, epochs=2)
    rd = RunDir(str(tmp_path / "recipe"))
    assert rd.checkpoint_rounds() == [0, 1, 2]   # ~150 examples per worker, batch 32, K=5: one round per epoch
    for r, expected in enumerate(states):
        _, arrays = rd.load_checkpoint(r)
        assert sorted(arrays) == ["W", "b", "vW", "vb"]
        assert state_digest(arrays) == state_digest(expected), "round %d" % r
    _, head = load_npz(str(tmp_path / "recipe" / "head.npz"))
    assert head["W"].tobytes() == states[-1]["W"].tobytes()


def test_the_recipes_are_defined_once():
    reference = resolve("reference")
    assert len(reference) == 1 and reference.shared == Hyperparameters()
    for f in FIELDS:
        assert f.default == getattr(Hyperparameters(), f.name) or f.name == "block_momentum"
        assert f.default == (parse_frequency(RECIPES["reference"][f.name]) if f.name == "averaging_frequency"
                             else RECIPES["reference"][f.name])
    # explicit values win over the recipe's
    assert resolve("reference", {"lr": 0.05}).shared.lr == 0.05
    assert resolve("reference", {"averaging_frequency": "epoch"}).shared.averaging_frequency == 0
    grid = resolve("reference", {"candidates": "l2=0,1e-4 lr=0.1,0.2"})
    assert len(grid) == 4 and grid.grid.text == "lr=0.1,0.2 l2=0.0,0.0001"   # axes in a fixed order
    assert [(c.lr, c.l2) for c in grid] == [(0.1, 0.0), (0.1, 1e-4), (0.2, 0.0), (0.2, 1e-4)]
    assert Candidates.from_dict(grid.to_dict()).differences(grid) == {}
    one = resolve("reference", {"candidates": "lr=0.05 hidden=8"})   # one value each: one plain candidate
    assert len(one) == 1 and one.grid.text == "none" and (one.shared.lr, one.shared.hidden) == (0.05, 8)


def test_the_default_recipe_in_config_and_help(synth, train_cli, write_features_fn, tmp_path):
    """What the train command does without --recipe comes from RECIPES["default"] alone (its values are
    the lead's to set: nothing here names them)."""
    from mr_tl.train import build_parser
    from mr_tl.training.hyperparameters import recipe_values

    table = RECIPES["default"]
    default = resolve()
    assert default.grid.text == Grid.parse(table["candidates"]).text
    for f in FIELDS:
        if f.name not in default.grid.names and table[f.name] is not None:
            assert getattr(default.shared, f.name) == f.type(table[f.name]), f.name
    assert Candidates.from_dict(default.to_dict()).differences(default) == {}

    run = tmp_path / "run"
    result = train_cli("-r", "inline", synth.path, "-o", run, "--epochs", 2)
    assert result.code == 0, result.err
    config = json.load(open(run / "config.json"))
    assert config["recipe"] == "default"
    assert config["training"] == json.loads(json.dumps(default.to_dict()))   # every resolved value
    assert set(NAMES) | {"candidates"} == set(config["training"])
    assert [{k: c[k] for k in GRID_FIELDS} for c in config["candidates"]] == [
        {k: getattr(c, k) for k in GRID_FIELDS} for c in default]
    several = len(default) > 1
    assert [("val_accuracy" in m) for m in metrics(run)] == [False, several]   # validated after the last round
    if several:
        # the head is the candidate best on validation (ties to the lower index), whatever the test split says
        last = metrics(run)[-1]
        val = [c["val_accuracy"] for c in last["candidates"]]
        best = val.index(max(val))
        assert last["best_candidate"] == best and last["val_accuracy"] == val[best]
        _, state = checkpoint(run, config["rounds"])
        _, head = load_npz(str(run / "head.npz"))
        assert head["W"].tobytes() == state["c%d/W" % best].tobytes()
        # a flag for any field of the recipe's grid replaces the whole grid: one head, what was asked
        for name in default.grid.names:
            value = default.grid.values(name)[-1]
            one_head = resolve(None, {name: value})
            assert len(one_head) == 1 and getattr(one_head[0], name) == value, name
        # and the default recipe refuses features without a val split (it chooses on validation)
        keep = [i for i, s in enumerate(synth.splits) if s != "val"]
        path = write_features_fn(str(tmp_path / "f"), [synth.ids[i] for i in keep], synth.labels[keep],
                                 [synth.splits[i] for i in keep], synth.X[keep], synth.classes)
        result = train_cli("-r", "inline", path, "-o", tmp_path / "noval", "--epochs", 1)
        assert result.code == 2 and "%d candidates (%s) are chosen on the val split" % (
            len(default), default.grid.text) in result.err

    # flags override the recipe: one lr is one candidate, with today's state names
    one = tmp_path / "one"
    assert train_cli("-r", "inline", synth.path, "-o", one, "--epochs", 1, "--lr", 0.05, "--hidden", 0,
                     "--averaging-frequency", 5).code == 0
    config = json.load(open(one / "config.json"))
    assert config["training"]["lr"] == 0.05 and config["training"]["candidates"] == "none"
    assert config["training"]["averaging_frequency"] == 5
    assert config["training"]["outer_optimizer"] == default.shared.outer_optimizer
    assert "c0/W" not in checkpoint(one, 1)[1] and "W" in checkpoint(one, 1)[1]
    assert "candidate" not in load_npz(str(one / "head.npz"))[0]

    text = " ".join(build_parser().format_help().split())
    assert "--recipe {reference,default}" in text and " ".join(recipe_values("lr").split()) in text
    assert recipe_values("lr").startswith("reference: 0.01; default: ")


@pytest.mark.parametrize("args, message", [
    (("--lr", 0.05, "--candidates", "lr=0.01,0.1"), "--lr and --candidates both give lr: give one"),
    (("--candidates", "seed=1,2"), "'seed' cannot differ between candidates"),
    (("--candidates", "lr=0.1,0.1"), "lr lists 0.1 twice"),
    (("--candidates", "lr=0.1,-1"), "--lr must be a positive number"),
    (("--recipe", "fast"), "invalid choice: 'fast'"),
])
def test_bad_candidates_and_recipes_are_refused(synth, train_cli, tmp_path, args, message):
    result = train_cli("-r", "inline", synth.path, "-o", tmp_path / "run", *args)
    assert result.code == 2 and message in result.err, result.err
    assert not os.path.exists(tmp_path / "run")


def test_candidates_need_a_val_split(synth, train_cli, write_features_fn, tmp_path):
    keep = [i for i, s in enumerate(synth.splits) if s != "val"]
    path = write_features_fn(str(tmp_path / "f"), [synth.ids[i] for i in keep], synth.labels[keep],
                             [synth.splits[i] for i in keep], synth.X[keep], synth.classes)
    result = train_cli("-r", "inline", path, "-o", tmp_path / "run", "--epochs", 1, "--candidates",
                       "lr=0.003,0.01,0.03")
    assert result.code == 2
    assert "3 candidates (lr=0.003,0.01,0.03) are chosen on the val split, but it is empty" in result.err
    assert not os.path.exists(tmp_path / "run")
    assert train_cli("-r", "inline", path, "-o", tmp_path / "run", "--epochs", 1, "--candidates", "lr=0.01").code == 0
