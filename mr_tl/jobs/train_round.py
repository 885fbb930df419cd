"""One round of distributed training: local SGD in the mappers, averaging in the reducer.

Run by ``python -m mr_tl.train`` once per round; not meant to be run by hand.

Input: the worker files the partition job wrote (mr_tl.jobs.partition):
round records ``T <TAB> WORKER <TAB> <feature record>`` (a training example)
and ``V <TAB> <feature record>`` (a validation example).  Each file holds
whole workers and is read by one map task (``ONE_SPLIT_PER_FILE``).
``--state`` is the current state (.npz: parameters W, b; Nesterov velocity
vW, vb; block-momentum arrays if used; with several ``--candidates`` each
candidate's arrays under ``c<i>/`` and ``dropped``; ``run/*``: the run's
worker sizes and normalization statistics), shipped to every task.

Mapper: collects its workers' examples (and, with ``--score``, its
validation examples); at the end (mr_tl.training.round.run_task) scores the
state on them with ``--score``, then for each worker visits its examples in
the order of ``rng(seed, "shuffle", epoch, worker)``, runs minibatches
``first_batch .. first_batch + K - 1`` from the state's start point (for
each candidate still trained, on the same minibatches), adds up
sibling workers of the averaging tree, and emits the tree nodes (parameters,
optimizer state, example counts, per-minibatch losses) and its score counts.
Combiner: adds up sibling nodes and score counts.  Reducer (one): completes
the tree, averages parameters and optimizer state weighted by examples,
applies the outer optimizer, and writes the next state and the scores as one
line.  ``--no-train`` only scores the state (the run's last validation).

``--map-only``: no combiner, no reducer; the mappers' lines are the job's
output and the driver finishes the round with the reducer's own function
(:func:`next_state`), so the state is the same bits either way.  The train
driver asks for it when there are few round tasks (mr_tl.jobs.round_runner):
it saves the reduce phase (a task start and the shuffle) of every round.
"""

from mrjob.protocol import RawProtocol, RawValueProtocol
from mrjob.step import MRStep

from mr_tl import averaging
from mr_tl.head import head_from_arrays
from mr_tl.jobs.base import MRTLJob
from mr_tl.jobs.jobconf import ONE_SPLIT_PER_FILE, REDUCES
from mr_tl.metrics import ScoreCounts
from mr_tl.normalization import Normalizer
from mr_tl.records import decode_arrays, encode_arrays, load_npz, parse_round_line
from mr_tl.training.hyperparameters import Candidates
from mr_tl.training.round import RoundSpec, TaskExamples, add_scores, candidate_arrays, finish_round, run_task

KEY = "round"
RUN_PREFIX = "run/"   # arrays of the state file that belong to the run, not to the state


def encode_contribution(node, leaf_values=None):
    """A contribution as one line; a leaf travels as float32 values, a node as float64 sums."""
    meta = node.to_meta()
    if leaf_values is not None:
        meta["kind"] = "leaf"
        return encode_arrays(meta, leaf_values)
    meta["kind"] = "node"
    return encode_arrays(meta, node.sums)


def encode_scores(scores):
    return encode_arrays({"kind": "scores", "scores": {k: v.to_meta() for k, v in sorted(scores.items())}}, {})


def decode_line(line):
    """``("scores", {name: ScoreCounts})`` or ``("node", (Contribution, leaf values or None))``."""
    meta, arrays = decode_arrays(line)
    if meta.get("kind") == "scores":
        return "scores", {k: ScoreCounts.from_meta(v) for k, v in meta["scores"].items()}
    if meta.get("kind") == "leaf":
        losses = meta["losses"].get(str(meta["index"]), [])
        return "node", (averaging.leaf(meta["index"], meta["examples"], arrays, losses), arrays)
    return "node", (averaging.Contribution.from_meta(meta, arrays), None)


def decode_contribution(line):
    kind, value = decode_line(line)
    if kind != "node":
        raise ValueError("not a contribution line")
    return value


def decode_lines(lines, n_workers):
    """Contribution and score lines -> ``(nodes, leaf values by node, summed scores)``.

    Sibling nodes are added up as the lines arrive (mr_tl.averaging.merge: the
    same sums in any order), so only the tree's unfinished nodes are held.
    """
    nodes, values_of, scores = [], {}, {}
    for line in lines:
        kind, value = decode_line(line)
        if kind == "scores":
            scores = add_scores([scores, value])
            continue
        node, values = value
        values_of[(node.level, node.index)] = values
        nodes = averaging.merge(nodes + [node], n_workers)
        values_of = {(c.level, c.index): values_of.get((c.level, c.index)) for c in nodes}
    return nodes, values_of, scores


def next_state(lines, arrays, candidates, spec, worker_sizes=None):
    """The round's end, from its contribution and score lines: ``(next state arrays, meta)``
    (mr_tl.training.round.finish_round).  Run by the reducer, or by the driver after a
    ``--map-only`` round."""
    nodes, _, scores = decode_lines(lines, candidates.shared.workers)
    return finish_round(nodes, scores, arrays, candidates, spec, worker_sizes)


def split_state(arrays):
    """``(state arrays, run arrays)`` of a state file (run arrays without their prefix)."""
    state = {k: v for k, v in arrays.items() if not k.startswith(RUN_PREFIX)}
    run = {k[len(RUN_PREFIX):]: v for k, v in arrays.items() if k.startswith(RUN_PREFIX)}
    return state, run


class MRTrainRound(MRTLJob):
    """Round records -> the next training state and the scores (see the module docstring)."""

    INPUT_PROTOCOL = RawValueProtocol
    INTERNAL_PROTOCOL = RawProtocol  # key "round", value one JSON line (mr_tl.records.encode_arrays)
    OUTPUT_PROTOCOL = RawValueProtocol
    JOBCONF = ONE_SPLIT_PER_FILE

    def configure_args(self):
        super().configure_args()
        self.add_file_arg("--state", help="current state (.npz) written by the train driver")
        Candidates.add_arguments(self.add_passthru_arg)
        self.add_passthru_arg("--tasks", type=int, default=0,
                              help="round tasks the workers are spread over (default: one per worker)")
        self.add_passthru_arg("--epoch", type=int, default=0)
        self.add_passthru_arg("--first-batch", type=int, default=0,
                              help="index of this round's first minibatch within the epoch")
        self.add_passthru_arg("--passes", type=int, default=1, help="epochs of local SGD in this round")
        self.add_passthru_arg("--score", action="store_true",
                              help="score the state on the val split and the training examples")
        self.add_passthru_arg("--no-train", dest="train", action="store_false",
                              help="only score the state (no SGD)")
        self.add_passthru_arg("--map-only", action="store_true",
                              help="no reducer: output the mappers' contribution and score lines; "
                                   "the caller finishes the round (next_state)")

    def jobconf(self):
        conf = dict(super().jobconf())
        # one reducer, or none (a later -D than mrjob's own for a map-only step: it must agree)
        conf[REDUCES] = "0" if self.options.map_only else "1"
        return conf

    def steps(self):
        # With one worker per task the mapper has added up all it can; a combiner
        # would cost a process per task and round for nothing.
        if self.options.map_only:
            return [MRStep(mapper_init=self.mapper_init, mapper=self.mapper, mapper_final=self.mapper_final)]
        several_per_task = 0 < self.options.tasks < self.options.workers
        return [MRStep(mapper_init=self.mapper_init, mapper=self.mapper, mapper_final=self.mapper_final,
                       combiner=self.combiner if several_per_task else None, reducer=self.reducer)]

    def _state(self):
        if not hasattr(self, "_state_arrays"):
            _, arrays = load_npz(self.options.state)
            self._state_arrays, self._run_arrays = split_state(arrays)
        return self._state_arrays

    def _spec(self):
        o = self.options
        return RoundSpec(o.epoch, o.first_batch, o.passes, o.train, o.score)

    # -- mapper -------------------------------------------------------------

    def mapper_init(self):
        arrays = self._state()
        n = len(Candidates.from_options(self.options))
        self.dim = head_from_arrays(candidate_arrays(arrays, 0, n)).n_features
        self.examples = TaskExamples(self.dim, self._run_arrays.get("worker_sizes"))

    def mapper(self, _, line):
        """Input: one round record. Output: nothing until mapper_final."""
        if line.startswith("V\t") and not self.options.score:
            return
        kind, worker, record = parse_round_line(line, self.dim)
        if kind == "T":
            self.examples.add_train(worker, record.id, record.label, record.features)
        else:
            self.examples.add_val(record.id, record.label, record.features)

    def mapper_final(self):
        """Output: ``round``, one line per tree node this task completed, and one of scores."""
        candidates = Candidates.from_options(self.options)
        normalizer = Normalizer.from_arrays(candidates.shared.normalization, self._run_arrays)
        spec = self._spec()
        val = self.examples.val_arrays(normalizer) if spec.score else None
        result = run_task(self._state(), self.examples.iter_workers(normalizer), val, candidates, spec)
        for node, values in result.nodes:
            self.increment_counter("mr_tl", "examples trained", node.examples)
            yield KEY, encode_contribution(node, values)
        if result.scores:
            yield KEY, encode_scores(result.scores)

    # -- combiner / reducer -------------------------------------------------

    def combiner(self, key, lines):
        """Input/output: contribution and score lines; sibling workers and scores added up."""
        nodes, values_of, scores = decode_lines(lines, self.options.workers)
        for node in nodes:
            yield key, encode_contribution(node, values_of.get((node.level, node.index)))
        if scores:
            yield key, encode_scores(scores)

    def reducer(self, key, lines):
        """Input: contribution and score lines. Output: the next state and the scores, one line."""
        spec = self._spec()
        new_arrays, meta = next_state(lines, self._state(), Candidates.from_options(self.options), spec,
                                      self._run_arrays.get("worker_sizes"))
        yield None, encode_arrays(meta, new_arrays if spec.train else {})


if __name__ == "__main__":
    MRTrainRound.run()
