"""A round runner that holds the data in this process: for tests, benchmarks and small data.

It runs the training loop's rounds with the same functions as the MapReduce
round tasks (mr_tl.training.round), each worker's examples in id order and
normalized the same way, so a run gives the same bits as on any mrjob
runner; only the data stays in memory.
"""

import numpy as np

from mr_tl.feature_scan import FeatureScan
from mr_tl.normalization import Normalizer
from mr_tl.training.loop import RoundRunner
from mr_tl.training.partition import task_of_worker, workers_of
from mr_tl.training.round import add_scores, finish_round, run_task


class InProcessRunner(RoundRunner):
    """Rounds over a :class:`mr_tl.features.FeatureSet` held in memory."""

    name = "in-process"

    def __init__(self, features):
        self.features = features

    def classes(self):
        return list(self.features.classes)

    def dim(self):
        return self.features.dim if len(self.features) else None

    def scan(self, hyper, n_classes, dim):
        scan = FeatureScan(hyper.seed, hyper.workers, hyper.normalization, n_classes, dim)
        seen, duplicates = {}, []
        for record in self.features.records():
            scan.add_record(record)
            seen[record.id] = seen.get(record.id, 0) + 1
        duplicates = sorted((i, n) for i, n in seen.items() if n > 1)
        # as the scan job hands it over: serialized, which adds the last (< 256) examples' moments
        # (without it, normalization statistics missed them and differed from the jobs')
        return FeatureScan.from_json(scan.to_json()), duplicates

    def prepare(self, hyper, tasks, scan, run_arrays):
        f = self.features
        normalizer = Normalizer.from_arrays(hyper.normalization, run_arrays)
        train = [i for i, s in enumerate(f.splits) if s == "train"]
        worker = workers_of([f.ids[i] for i in train], hyper.seed, hyper.workers)
        self.tasks = [[] for _ in range(tasks)]
        for w in range(hyper.workers):
            rows = sorted((f.ids[train[k]], train[k]) for k in np.flatnonzero(worker == w))
            index = np.array([i for _, i in rows], dtype=np.int64)
            X = normalizer.apply(f.X[index]) if len(index) else np.zeros((0, f.dim), np.float32)
            self.tasks[task_of_worker(w, hyper.workers, tasks)].append((w, X, f.labels[index]))
        val = np.array([i for i, s in enumerate(f.splits) if s == "val"], dtype=np.int64)
        self.worker_sizes = [int(n) for n in run_arrays["worker_sizes"]]
        self.val = (normalizer.apply(f.X[val]) if len(val) else np.zeros((0, f.dim), np.float32), f.labels[val])

    def run_round(self, state, candidates, tasks, spec):
        results = [run_task(state, workers, self.val if t == 0 and spec.score else None, candidates, spec)
                   for t, workers in enumerate(self.tasks)]
        nodes = [node for r in results for node, _ in r.nodes]
        return finish_round(nodes, add_scores(r.scores for r in results), state, candidates, spec,
                            self.worker_sizes)
