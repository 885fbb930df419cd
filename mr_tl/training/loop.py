"""The training loop: plan -> resume -> rounds -> finish, over a swappable round runner.

The loop holds the model, counts and file names, never the data: what it
knows of the features comes from the runner's scan (counts, dimensions,
worker sizes, the fingerprint, moment sums), and every round, validation
included, is the runner's.  Two runners implement :class:`RoundRunner`:
:class:`mr_tl.training.in_process.InProcessRunner` (the data in this
process: tests, benchmarks) and :class:`mr_tl.jobs.round_runner.MapReduceRunner`
(scan, partition and rounds as MapReduce jobs on any mrjob runner).  Both
give the same bits.

Validation rides along with the next round: the job of round r+1 scores its
start state, which is the state after round r, on the val split and on the
training examples (so a validated round costs no extra job); the run's last
validation is one score-only job.  A round's metrics line (and its progress
line) is written when its validation has arrived.

Candidates (several heads trained side by side, mr_tl.training.round) are
chosen on validation: the best val accuracy (ties: the earlier round, then
the lower index).  A run of several candidates validates at least after its last
round (so it needs a val split).  Each metrics line then also holds
``candidates`` (per candidate: losses, and val/train accuracy and loss when
validated; ``dropped`` once it diverged) and ``best_candidate``; its
top-level numbers (losses, loss, val_accuracy, ...) are that candidate's: the
best on this line's validation, or, on a line without one, the best on the
latest validation.  Without early stopping the head is the best candidate of
the last round; with it, the best (round, candidate) of all validations.  A
candidate whose parameters or losses become non-finite is dropped: frozen as
it was after the round before, neither trained nor scored nor chosen;
training stops only when no candidate is left.
"""

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from mr_tl import __version__, labels
from mr_tl.errors import FeatureError, RunError, TrainingError, UsageError
from mr_tl.feature_scan import check
from mr_tl.normalization import Normalizer
from mr_tl.run_dir import RunDir, atomic_write
from mr_tl.training.hyperparameters import GRID_FIELDS, Candidates, as_candidates
from mr_tl.training.partition import rounds_per_epoch, schedule
from mr_tl.training.round import (
    DROPPED,
    RoundSpec,
    alive,
    candidate_arrays,
    dropped_in,
    initial_state,
    param_names,
    prefix,
    with_prefix,
)

# what a run directory holds (mr_tl.run_dir); a folder with anything else is not taken for one
RUN_FILES = {"config.json", "labels.json", "metrics.jsonl", "head.npz", "normalization.npz", "checkpoints", "data",
             "evaluation", "report"}


class RoundFailed(Exception):
    """A round job failed in a way that running it again may fix (a lost task, a killed job)."""


class RoundRunner:
    """What the loop needs from whoever holds the data and runs the rounds."""

    name = "?"

    def classes(self):
        """The class names, in label order."""
        raise NotImplementedError

    def dim(self):
        """The dimension of the feature vectors (from the first record), or None if there is none."""
        raise NotImplementedError

    def scan(self, hyper, n_classes, dim):
        """``(FeatureScan, [(duplicated id, count)])`` of the features for this partition."""
        raise NotImplementedError

    def prepare(self, hyper, tasks, scan, run_arrays):
        """Deal the training examples to workers (or find them dealt already); ``run_arrays``
        (worker sizes, normalization statistics) go with every round."""
        raise NotImplementedError

    def run_round(self, state, candidates, tasks, spec):
        """``(next state arrays, meta)`` of one round of :class:`Candidates` ``candidates``; raise
        RoundFailed for a retryable failure."""
        raise NotImplementedError

    def describe(self):
        """The inputs, for the run's config (file names, not data)."""
        return {}

    def close(self):
        """Remove temporary files (the prepared worker files stay for --resume)."""


@dataclass(frozen=True)
class Schedule:
    """How long to train, when to validate and stop; none of it changes a round's result."""

    epochs: int = 10
    tasks: int = 0                # round tasks the workers are spread over; 0 = one per worker
    validate_every: int = 0       # validate every N rounds (and after the last); 0 = never (with candidates:
    #                               after the last round only)
    early_stopping: int = 0       # stop after this many validations without a better val accuracy
    stop_after_rounds: int = 0    # stop after N rounds of this invocation, without a head
    round_retries: int = 2        # run a failed round job again up to this many times

    def __post_init__(self):
        problems = []
        for name in ("epochs",):
            if getattr(self, name) < 1:
                problems.append("--%s must be at least 1" % name)
        for name in ("tasks", "validate_every", "early_stopping", "stop_after_rounds", "round_retries"):
            if getattr(self, name) < 0:
                problems.append("--%s must be >= 0" % name.replace("_", "-"))
        if self.early_stopping and not self.validate_every:
            problems.append("--early-stopping needs --validate-every")
        if problems:
            raise UsageError("; ".join(problems))


def fmt_seconds(s):
    s = int(s)
    return "%dh%02dm" % (s // 3600, s % 3600 // 60) if s >= 3600 else "%dm%02ds" % (s // 60, s % 60)


def mean_losses(losses_by_worker):
    """Per-minibatch loss averaged over the workers that ran that minibatch (NaN if one diverged)."""
    lists = [[float("nan") if x is None else x for x in losses] for _, losses in sorted(losses_by_worker.items())]
    steps = max((len(losses) for losses in lists), default=0)
    return [float(np.mean([losses[k] for losses in lists if k < len(losses)])) for k in range(steps)]


class Trainer:
    """One invocation of training: ``Trainer(...).run()`` (see the module docstring)."""

    def __init__(self, runner, run_dir, hyper, schedule=Schedule(), resume=False, out=print, recipe=None):
        """``hyper``: :class:`Candidates` (or one :class:`Hyperparameters`); ``recipe``: the name
        of the recipe they were resolved from, for config.json."""
        self.runner = runner
        self.run = RunDir(run_dir) if isinstance(run_dir, str) else run_dir
        self.candidates = as_candidates(hyper)
        self.hyper = self.candidates.shared   # what all candidates share
        self.recipe = recipe
        self.schedule = schedule
        self.resume = resume
        self.out = out

    # -- plan: what the data is and whether it can be trained on ------------------------

    def plan(self):
        h, s = self.hyper, self.schedule
        self.classes = self.runner.classes()
        dim = self.runner.dim()
        if dim is None:
            raise FeatureError("the features hold no feature vectors")
        scan, duplicates = self.runner.scan(h, len(self.classes), dim)
        check(scan, duplicates, len(self.classes))
        self.scan, self.dim = scan, dim
        self.counts = dict(scan.featurized)
        if self.counts["train"] == 0:
            raise FeatureError("the train split is empty")
        if s.validate_every and self.counts["val"] == 0:
            raise FeatureError("--validate-every needs a val split, but it is empty")
        if h.workers > self.counts["train"]:
            raise FeatureError("%d workers but only %d training examples" % (h.workers, self.counts["train"]))
        if len(self.candidates) > 1 and self.counts["val"] == 0:
            raise FeatureError("%d candidates (%s) are chosen on the val split, but it is empty: give features "
                               "with a val split, or train one head (--candidates none, or one value each, "
                               "e.g. --%s %s)" % (len(self.candidates), self.candidates.grid.text,
                                                  self.candidates.grid.names[0],
                                                  getattr(self.hyper, self.candidates.grid.names[0])))
        self.tasks = s.tasks or h.workers
        if not 1 <= self.tasks <= h.workers:
            raise UsageError("--tasks must be between 1 and --workers (%d)" % h.workers)
        self.normalizer = Normalizer.fit(h.normalization, scan.moments)
        self.worker_sizes = [int(n) for n in scan.worker_sizes]
        self.per_epoch = rounds_per_epoch(self.worker_sizes, h.batch_size, h.averaging_frequency)
        self.schedule_of_rounds = schedule(s.epochs, self.per_epoch, h.passes_per_round)
        self.total_rounds = len(self.schedule_of_rounds)
        self.fingerprint = scan.fingerprint()
        self.run_key = run_key(h, self.fingerprint, dim, self.classes)

    # -- resume or start -------------------------------------------------------------------

    def resume_or_start(self):
        run = self.run
        self.start_round, self.arrays, self.start_meta = 0, None, None
        if os.path.exists(run.file("config.json")):
            if not self.resume:
                raise RunError("%s already holds a run (use --resume to continue it, or another -o)" % run.path)
            previous = run.read_config()
            try:
                before = Candidates.from_dict(previous["training"])
            except (KeyError, TypeError, ValueError, UsageError) as e:
                raise RunError("%s/config.json is not a configuration of this version of mr_tl: %s"
                               % (run.path, e)) from None
            changed = before.differences(self.candidates)
            if changed:
                hint = "" if "recipe" in previous else (
                    " (the run was made before recipes, with the reference recipe's values: add --recipe reference)")
                raise RunError("cannot resume: the configuration differs from the run's: %s%s" % (", ".join(
                    "%s was %r, now %r" % (k, a, b) for k, (a, b) in sorted(changed.items())), hint))
            features = previous.get("features", {})
            if features.get("fingerprint") != self.fingerprint:
                raise RunError("cannot resume: the training features differ from the run's (%s examples, "
                               "fingerprint %s...; now %d, %s...)"
                               % (features.get("train_examples"), str(features.get("fingerprint"))[:12],
                                  self.counts["train"], self.fingerprint[:12]))
            found = run.latest_good_checkpoint(warn=self.out)
            if found is not None:
                self.check_own_checkpoint(*found)
                self.start_round, self.start_meta, self.arrays = found
                self.out("resuming after round %d" % self.start_round)
        else:
            others = sorted(n for n in (os.listdir(run.path) if os.path.isdir(run.path) else [])
                            if n.split(".tmp-", 1)[0] not in RUN_FILES and not n.startswith("."))
            if others:
                # a folder that is not a run (e.g. -o features/ by mistake): never write into it
                raise RunError("%s is not empty and holds no run (it has %s); give a new folder as -o"
                               % (run.path, ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")))
            if self.resume:
                self.out("nothing to resume in %s; starting a new run" % run.path)
        if self.start_round > self.total_rounds:
            raise RunError("cannot resume with --epochs %d (%d rounds): the run is already at round %d; "
                           "its head is the checkpoint of that round"
                           % (self.schedule.epochs, self.total_rounds, self.start_round))

    def check_own_checkpoint(self, round_number, meta, arrays):
        """RunError if a checkpoint in this run's folder was written by another run (copied in):
        its run key differs, or (a checkpoint without one) its head has another shape."""
        path = self.run.checkpoint_path(round_number)
        key = meta.get("run") if isinstance(meta, dict) else None
        # the first candidate's first layer: D x C (or D x hidden), and its last bias: C
        first = candidate_arrays(arrays, 0, len(self.candidates))
        first_w = first.get("W1", first.get("W"))
        shape = getattr(first_w, "shape", None)
        if key is not None and key != self.run_key:
            why = "it was written by a run of other features or another configuration"
        elif key is None and (shape is None or shape[0] != self.dim
                              or getattr(first.get("b"), "shape", None) != (len(self.classes),)):
            why = "its head is %s, this run's takes %d features to %d classes" % (
                "x".join(str(n) for n in shape or ()) or "missing", self.dim, len(self.classes))
        else:
            return
        raise RunError("%s does not belong to the run in %s: %s; remove it (and its .sha256) to continue "
                       "from the run's own checkpoints" % (path, self.run.path, why))

    def needs_validation(self, round_number):
        """Every ``validate_every`` rounds and after the last; after the last one anyway with candidates."""
        every = self.schedule.validate_every
        if round_number <= 0:
            return False
        if round_number == self.total_rounds:
            return bool(every) or len(self.candidates) > 1
        return bool(every) and round_number % every == 0

    def write_config(self):
        run = self.run
        self.config = {
            "recipe": self.recipe,
            "training": self.candidates.to_dict(),
            "candidates": [dict({name: getattr(c, name) for name in GRID_FIELDS}, index=i)
                           for i, c in enumerate(self.candidates)],
            "epochs": self.schedule.epochs, "tasks": self.tasks, "rounds_per_epoch": self.per_epoch,
            "rounds": self.total_rounds,
            "validate_every": self.schedule.validate_every, "early_stopping": self.schedule.early_stopping,
            "runner": self.runner.name, "mr_tl_version": __version__,
            "features": dict(self.runner.describe(), fingerprint=self.fingerprint, dim=self.dim,
                             classes=len(self.classes), train_examples=self.counts["train"],
                             val_examples=self.counts["val"], test_examples=self.counts["test"]),
            "worker_examples": self.worker_sizes,
        }
        run.write_json("config.json", self.config)
        atomic_write(run.file("labels.json"), labels.dumps(self.classes))
        if self.normalizer.kind != "none":
            run.write_arrays("normalization.npz", {"kind": self.normalizer.kind}, self.normalizer.arrays())

    def run_arrays(self):
        arrays = {"worker_sizes": np.asarray(self.worker_sizes, dtype=np.int64)}
        arrays.update(self.normalizer.arrays())
        return arrays

    # -- the rounds -----------------------------------------------------------------------

    def _run_round(self, spec, round_number):
        attempts = self.schedule.round_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self.runner.run_round(self.arrays, self.candidates, self.tasks, spec)
            except RoundFailed as e:
                # A round is a pure function of (state, data, round): running it
                # again after a lost task gives the same bits.
                if attempt == attempts:
                    raise TrainingError("round %d failed %d times (%s); the last good checkpoint (round %d) "
                                        "is kept; fix the cause and continue with --resume"
                                        % (round_number, attempt, e, self.last_checkpoint)) from None
                self.out("round %d failed (%s); running it again (attempt %d of %d)"
                         % (round_number, e, attempt + 1, attempts))

    # -- candidates: losses, divergence, the choice ----------------------------------------------

    def _losses(self, losses_by_worker):
        """``{candidate: per-minibatch losses}`` of the candidates trained in a round (from its meta)."""
        n = len(self.candidates)
        if n == 1:
            return {0: mean_losses({int(w): loss for w, loss in losses_by_worker.items()})}
        # a worker without examples reports [] (an empty leaf)
        return {i: mean_losses({int(w): ls.get(str(i), []) if isinstance(ls, dict) else ls
                                for w, ls in losses_by_worker.items()})
                for i in alive(self.arrays, n)}

    def _drop_diverged(self, new_arrays, losses, round_number):
        """``new_arrays`` with every candidate that diverged in ``round_number`` dropped (its arrays as
        before the round); raises :class:`TrainingError` when no candidate is left."""
        n = len(self.candidates)
        diverged = {}
        for i, mine in losses.items():
            mine_arrays = candidate_arrays(new_arrays, i, n)
            names = param_names(mine_arrays)   # the parameters first, then velocities, then the outer state
            order = names + ["v" + m for m in names] + sorted(set(mine_arrays) - set(names) - {"v" + m for m in names})
            bad = [name for name in order if not np.all(np.isfinite(mine_arrays[name]))]
            if bad or not all(math.isfinite(x) for x in mine):
                diverged[i] = "loss %s, non-finite %s" % (mine[-1] if mine else "?", ", ".join(bad) or "losses")
        if not diverged:
            return new_arrays
        if len(diverged) == len(losses):
            if n == 1:
                raise TrainingError("training diverged in round %d (%s); the last good checkpoint (round %d) is "
                                    "kept; try a lower --lr" % (round_number, diverged[0], round_number - 1))
            raise TrainingError("training diverged in round %d: no candidate is left (%s); the last good "
                                "checkpoint (round %d) is kept; try lower learning rates"
                                % (round_number, "; ".join("candidate %d (%s): %s" % (i, self.candidates.describe(i),
                                                                                      why)
                                                           for i, why in sorted(diverged.items())),
                                   round_number - 1))
        new_arrays = dict(new_arrays)
        dropped = dropped_in(new_arrays, n).copy()
        for i, why in sorted(diverged.items()):
            new_arrays.update(with_prefix(candidate_arrays(self.arrays, i, n), prefix(i, n)))
            dropped[i] = round_number
            self.out("candidate %d (%s) diverged in round %d (%s): dropped; it stays as after round %d, is not "
                     "trained further and cannot be chosen" % (i, self.candidates.describe(i), round_number, why,
                                                              round_number - 1))
        new_arrays[DROPPED] = dropped
        return new_arrays

    def _candidate_entries(self, losses):
        """The ``candidates`` of a metrics line: per candidate its losses (None where not finite), and
        ``dropped`` (the round it diverged in) once dropped."""
        dropped = dropped_in(self.arrays, len(self.candidates))
        entries = []
        for i in range(len(self.candidates)):
            entry = {"candidate": i}
            if i in losses:
                finite = all(math.isfinite(x) for x in losses[i])
                entry["losses"] = [x if math.isfinite(x) else None for x in losses[i]]
                entry["loss"] = float(np.mean(losses[i])) if losses[i] and finite else None
            if dropped[i]:
                entry["dropped"] = int(dropped[i])
            entries.append(entry)
        return entries

    def _choice(self):
        """``(val accuracy, round, candidate)``: the best of all validations so far among the candidates
        not dropped (ties: the earlier round, then the lower index), or None."""
        dropped = dropped_in(self.arrays, len(self.candidates))
        best = None
        for round_number, accuracies in self.history:
            for i in sorted(accuracies):
                if not dropped[i] and (best is None or accuracies[i] > best[0]):
                    best = (accuracies[i], round_number, i)
        return best

    def _best_of(self, accuracies):
        """The best candidate not dropped among ``{candidate: val accuracy}`` (ties: the lower index), or None."""
        dropped = dropped_in(self.arrays, len(self.candidates))
        mine = [i for i in accuracies if not dropped[i]]
        return max(mine, key=lambda i: (accuracies[i], -i)) if mine else None

    def _leader(self):
        """The candidate whose numbers a metrics line shows: the best on the latest validation (among
        those not dropped), before any validation the first candidate left."""
        for _, accuracies in reversed(self.history):
            best = self._best_of(accuracies)
            if best is not None:
                return best
        return alive(self.arrays, len(self.candidates))[0]

    def _read_history(self, records):
        """``[(round, {candidate: val accuracy})]`` of the validated metrics lines."""
        self.history = []
        for m in records:
            if m.get("val_accuracy") is None:
                continue
            if len(self.candidates) == 1:
                accuracies = {0: m["val_accuracy"]}
            else:
                accuracies = {int(c["candidate"]): c["val_accuracy"] for c in m.get("candidates", [])
                              if c.get("val_accuracy") is not None}
            self.history.append((m["round"], accuracies))

    # -- the rounds -----------------------------------------------------------------------

    def _finish_record(self, record, scores):
        """Add the validation of ``record``'s round; returns whether training should stop early."""
        n = len(self.candidates)
        found = {}
        for i in range(n):
            p = prefix(i, n)
            if p + "val" not in scores:
                continue   # dropped: not scored
            val, train = scores[p + "val"], scores[p + "train"]
            found[i] = {"val_accuracy": val["correct"] / val["examples"] if val["examples"] else 0.0,
                        "val_loss": _loss(val), "train_accuracy": train["correct"] / train["examples"],
                        "train_loss": _loss(train)}
        best = max(found, key=lambda i: (found[i]["val_accuracy"], -i))
        record.update(found[best])
        if n > 1:
            for i, numbers in found.items():
                record["candidates"][i].update(numbers)
            record["best_candidate"] = best
            record["losses"], record["loss"] = record["candidates"][best]["losses"], record["candidates"][best]["loss"]
        self.history.append((record["round"], {i: numbers["val_accuracy"] for i, numbers in found.items()}))
        choice = self._choice()
        waited = sum(1 for round_number, _ in self.history if round_number > choice[1])
        return bool(self.schedule.early_stopping) and waited >= self.schedule.early_stopping

    def _emit(self, record):
        """Append ``record`` to metrics.jsonl and print its progress line."""
        self.run.append_metrics(record)
        line = "round %d/%d  epoch %d/%d  loss %.4f" % (
            record["round"], self.total_rounds, record["epoch"], self.schedule.epochs,
            float("nan") if record["loss"] is None else record["loss"])
        if "val_accuracy" in record:
            line += "  val acc %.4f" % record["val_accuracy"]
            if len(self.candidates) > 1:
                line += "  best: candidate %d (%s)" % (record["best_candidate"],
                                                       self.candidates.describe(record["best_candidate"]))
        recent = self.durations[-10:]
        eta = (self.total_rounds - record["round"]) * sum(recent) / len(recent) if recent else 0.0
        self.out("%s  %.1f s/round  ETA %s" % (line, record.get("seconds", 0.0), fmt_seconds(eta)))

    def rounds(self):
        h, run = self.hyper, self.run
        self.durations = []
        self.last_checkpoint = self.start_round
        # the last round's record, waiting for its validation (on resume: the checkpoint's round)
        pending = None
        if self.needs_validation(self.start_round):
            pending = dict(self.start_meta.get("metrics") or {"round": self.start_round})
        stop_early = False
        for r in range(self.start_round, self.total_rounds):
            epoch, j, passes = self.schedule_of_rounds[r]
            spec = RoundSpec(epoch, j * max(h.averaging_frequency, 0), passes, train=True,
                             score=self.needs_validation(r))
            t0 = time.time()
            new_arrays, meta = self._run_round(spec, r + 1)
            seconds = time.time() - t0
            if spec.score:
                stop_early = self._finish_record(pending, meta["scores"])
                self._emit(pending)
                pending = None
                if stop_early:
                    break   # round r + 1 is not kept: the run stops at round r, as if validated at once
            losses = self._losses(meta["losses"])
            self.arrays = self._drop_diverged(new_arrays, losses, r + 1)
            leader = self._leader()
            self.iteration += len(losses[leader])
            self.durations.append(seconds)
            record = {"round": r + 1, "epoch": epoch + passes, "iteration": self.iteration, "losses": losses[leader],
                      "loss": float(np.mean(losses[leader])) if losses[leader] else None,
                      "examples": meta["examples"], "seconds": round(seconds, 3)}
            if len(self.candidates) > 1:
                record["best_candidate"] = leader
                record["candidates"] = self._candidate_entries(losses)
            # the checkpoint holds only what is deterministic (no timings): same run, same bytes
            run.write_checkpoint(r + 1, {"round": r + 1, "epoch": epoch + passes, "iteration": self.iteration,
                                         "metrics": {k: v for k, v in record.items() if k != "seconds"},
                                         "run": self.run_key}, self.arrays)
            self.last_checkpoint = r + 1
            if self.needs_validation(r + 1):
                pending = record
            else:
                self._emit(record)
            if (self.schedule.stop_after_rounds and r + 1 - self.start_round >= self.schedule.stop_after_rounds
                    and r + 1 < self.total_rounds):
                self.out("stopping after %d rounds as asked; continue with --resume" % self.schedule.stop_after_rounds)
                return False
        if pending is not None:   # the last round: one score-only job
            t0 = time.time()
            _, meta = self._run_round(RoundSpec(train=False, score=True), pending["round"])
            self.durations.append(time.time() - t0)
            stop_early = self._finish_record(pending, meta["scores"]) or stop_early
            self._emit(pending)
        if stop_early:
            accuracy, best_round, best = self._choice()
            self.out("early stopping: no better validation accuracy for %d validations; best was round %d (%.4f)%s"
                     % (self.schedule.early_stopping, best_round, accuracy,
                        ", candidate %d (%s)" % (best, self.candidates.describe(best))
                        if len(self.candidates) > 1 else ""))
        return True

    # -- the whole invocation ------------------------------------------------------------------

    def run_all(self):
        """Plan, resume or start, run the rounds, write the head; returns the RunDir."""
        try:
            return self._run_all()
        finally:
            self.runner.close()

    def _run_all(self):
        started = time.time()
        self.plan()
        self.resume_or_start()
        run, h = self.run, self.hyper
        # nothing is written before this point: every check above leaves RUN_DIR as it was
        os.makedirs(run.path, exist_ok=True)
        self.runner.prepare(h, self.tasks, self.scan, self.run_arrays())
        self.write_config()
        if self.arrays is None:
            self.arrays = initial_state(self.dim, len(self.classes), self.candidates)
            run.write_checkpoint(0, {"round": 0, "epoch": 0, "iteration": 0, "run": self.run_key}, self.arrays)
            run.rewrite_metrics([])
            self.start_meta = {}
        else:
            # drop metric lines past the checkpoint we resume from (their rounds will be redone), and the
            # line of that checkpoint's round if its validation is still to come; restore it from the
            # checkpoint if the driver died before appending it
            start = self.start_round
            kept = [m for m in run.read_metrics() if m["round"] < start
                    or (m["round"] == start and not self.needs_validation(start))]
            if start > 0 and not self.needs_validation(start) and not any(m["round"] == start for m in kept) \
                    and "metrics" in self.start_meta:
                kept.append(self.start_meta["metrics"])
            run.rewrite_metrics(kept)
        self.iteration = self.start_meta.get("iteration", 0) if self.start_meta else 0
        self._read_history(run.read_metrics())
        n = len(self.candidates)
        self.out("training %d -> %d classes: %d examples on %d workers (%s per round), %d rounds (%d epochs%s), "
                 "%srunner %s" % (self.dim, len(self.classes), self.counts["train"], h.workers, h.describe_schedule(),
                                  self.total_rounds, self.schedule.epochs,
                                  " x %d" % self.per_epoch if h.passes_per_round <= 1 else "",
                                  "%d candidates (%s), " % (n, self.candidates.grid.text) if n > 1 else "",
                                  self.runner.name))
        finished = self.rounds()
        if not finished:
            return run
        final_round, chosen = self._final_choice()
        n = len(self.candidates)
        meta, arrays = run.load_checkpoint(final_round)
        self.check_own_checkpoint(final_round, meta, arrays)
        arrays = candidate_arrays(arrays, chosen, n)
        head_meta = {"classes": self.classes, "n_features": self.dim, "round": final_round,
                     "features": self.config["features"], "training": self.candidates[chosen].to_dict(),
                     "normalization": self.normalizer.kind}
        if n > 1:
            accuracies = dict(self.history).get(final_round, {})
            head_meta["candidate"] = dict(self.candidates.point(chosen), index=chosen, of=n,
                                          grid=self.candidates.grid.text, recipe=self.recipe,
                                          val_accuracy=accuracies.get(chosen))
            self.out("chose candidate %d of %d (%s) on validation: %s" % (
                chosen, n, self.candidates.describe(chosen), ", ".join(
                    "%d %s" % (i, "dropped in round %d" % r if r else "%.4f" % accuracies[i] if i in accuracies
                               else "-")
                    for i, r in enumerate(dropped_in(self.arrays, n)))))
        run.write_head({name: arrays[name] for name in param_names(arrays)}, head_meta, self.normalizer.arrays())
        self.out("done in %s: %s/head.npz (round %d)" % (fmt_seconds(time.time() - started), run.path, final_round))
        return run

    def _final_choice(self):
        """``(round, candidate)`` of the run's head: with early stopping the best of all validations, else
        the best candidate on the last round's validation (the only one without validation)."""
        choice = self._choice()
        if self.schedule.early_stopping and choice is not None:
            return choice[1], choice[2]
        accuracies = dict(self.history).get(self.last_checkpoint, {})
        best = self._best_of(accuracies)
        return self.last_checkpoint, best if best is not None else self._leader()


def run_key(hyper, fingerprint, dim, classes):
    """What makes a run's rounds what they are (its configuration, its training data, its shape),
    as a short digest; every checkpoint carries it, so one copied from another run is refused."""
    text = json.dumps({"training": hyper.to_dict(), "fingerprint": fingerprint, "dim": dim,
                       "classes": list(classes)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _loss(counts):
    from mr_tl.metrics import LOSS_UNIT

    return counts["loss_units"] * LOSS_UNIT / counts["examples"] if counts["examples"] else 0.0

