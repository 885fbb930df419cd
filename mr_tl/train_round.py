"""One round of distributed training: local SGD in the mappers, averaging in the reducer.

Run by ``python -m mr_tl.train`` once per round; not meant to be run by hand.

Input: the prepared worker files (gzip, so each is one map task on every
runner), lines ``WORKER <TAB> <feature record>``, sorted by worker and id.
``--state`` is the current state (.npz: parameters W, b; Nesterov velocity
vW, vb; block-momentum arrays if used), shipped to every task.

Mapper: for each of its workers, visits the worker's examples in the order
of ``rng(seed, "shuffle", epoch, worker)``, runs minibatches
``first_batch .. first_batch + K - 1`` of ``--batch-size`` from the state's
start point, and emits its parameters, optimizer state, example count and
per-minibatch losses.  Combiner: sums sibling workers of the averaging tree
(mr_tl.averaging).  Reducer (one): completes the tree, averages parameters
and optimizer state weighted by examples, applies the outer optimizer and
writes the next state as one line.
"""

import numpy as np
from mrjob.protocol import RawProtocol, RawValueProtocol
from mrjob.step import MRStep

from mr_tl import averaging
from mr_tl.job import MRTLJob
from mr_tl.records import FeatureRecord, decode_arrays, encode_arrays, load_npz, parse_feature_line
from mr_tl.rounds import RoundParams, finish_round, worker_round

KEY = "round"


def encode_contribution(node, leaf_values=None):
    """A contribution as one line; a leaf travels as float32 values, a node as float64 sums."""
    meta = node.to_meta()
    if leaf_values is not None:
        meta["kind"] = "leaf"
        return encode_arrays(meta, leaf_values)
    meta["kind"] = "node"
    return encode_arrays(meta, node.sums)


def decode_contribution(line):
    meta, arrays = decode_arrays(line)
    if meta.get("kind") == "leaf":
        losses = meta["losses"].get(str(meta["index"]), [])
        return averaging.leaf(meta["index"], meta["examples"], arrays, losses), arrays
    return averaging.Contribution.from_meta(meta, arrays), None


class MRTrainRound(MRTLJob):
    """Worker files -> the next training state (see the module docstring)."""

    INPUT_PROTOCOL = RawValueProtocol
    INTERNAL_PROTOCOL = RawProtocol  # key "round", value one JSON line (mr_tl.records.encode_arrays)
    OUTPUT_PROTOCOL = RawValueProtocol
    JOBCONF = {"mapreduce.job.reduces": "1"}

    def configure_args(self):
        super().configure_args()
        self.add_file_arg("--state", help="current state (.npz) written by the train driver")
        self.add_passthru_arg("--workers", type=int, default=1, help="workers in this run")
        self.add_passthru_arg("--tasks", type=int, default=0,
                              help="map tasks the workers are spread over (default: one per worker)")
        self.add_passthru_arg("--seed", type=int, default=42)
        self.add_passthru_arg("--epoch", type=int, default=0)
        self.add_passthru_arg("--first-batch", type=int, default=0,
                              help="index of this round's first minibatch within the epoch")
        self.add_passthru_arg("--averaging-frequency", type=int, default=5,
                              help="minibatches per round (0 = one pass over each worker's examples)")
        self.add_passthru_arg("--batch-size", type=int, default=32)
        self.add_passthru_arg("--lr", type=float, default=0.01)
        self.add_passthru_arg("--momentum", type=float, default=0.8)
        self.add_passthru_arg("--l2", type=float, default=0.0)
        self.add_passthru_arg("--outer-optimizer", default="average", choices=("average", "block-momentum"))
        self.add_passthru_arg("--block-momentum", type=float, default=None)
        self.add_passthru_arg("--block-lr", type=float, default=1.0)

    def steps(self):
        # With one worker per task there is nothing for a combiner to add up;
        # leaving it out saves a process per task and round.
        several_per_task = 0 < self.options.tasks < self.options.workers
        return [MRStep(mapper_init=self.mapper_init, mapper=self.mapper, mapper_final=self.mapper_final,
                       combiner=self.combiner if several_per_task else None, reducer=self.reducer)]

    def _state(self):
        if not hasattr(self, "_state_arrays"):
            _, self._state_arrays = load_npz(self.options.state)
        return self._state_arrays

    # -- mapper -------------------------------------------------------------

    def mapper_init(self):
        self.examples = {}  # worker -> ([labels], [rows])

    def mapper(self, _, line):
        """Input: ``WORKER <TAB> F ...`` feature line. Output: nothing until mapper_final."""
        worker, record_line = line.split("\t", 1)
        record = parse_feature_line(record_line)
        if not isinstance(record, FeatureRecord):
            return
        labels, rows = self.examples.setdefault(int(worker), ([], []))
        labels.append(record.label)
        rows.append(record.features)

    def mapper_final(self):
        """Output: ``round``, one contribution line per worker of this task."""
        arrays = self._state()
        params = RoundParams.from_options(self.options)
        for worker in sorted(self.examples):
            labels, rows = self.examples.pop(worker)
            X = np.stack(rows)
            y = np.asarray(labels, dtype=np.int64)
            examples, values, losses = worker_round(arrays, X, y, worker, params)
            self.increment_counter("mr_tl", "examples trained", examples)
            self.increment_counter("mr_tl", "minibatches", len(losses))
            node = averaging.leaf(worker, examples, values, losses)
            yield KEY, encode_contribution(node, values)

    # -- combiner / reducer -------------------------------------------------

    def _merge(self, lines):
        decoded = [decode_contribution(line) for line in lines]
        values_of = {(c.level, c.index): v for c, v in decoded}
        merged = averaging.merge([c for c, _ in decoded], self.options.workers)
        return merged, values_of

    def combiner(self, key, lines):
        """Input/output: contribution lines; sibling workers summed where all are present."""
        merged, values_of = self._merge(lines)
        for node in merged:
            yield key, encode_contribution(node, values_of.get((node.level, node.index)))

    def reducer(self, key, lines):
        """Input: contribution lines. Output: the next state, one ``encode_arrays`` line."""
        contributions = [c for c, _ in map(decode_contribution, lines)]
        new_arrays, meta = finish_round(contributions, self._state(), RoundParams.from_options(self.options))
        yield None, encode_arrays(meta, new_arrays)


if __name__ == "__main__":
    MRTrainRound.run()
