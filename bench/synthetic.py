"""Caltech-scale synthetic features for the training benchmarks (numpy only).

Class prototypes share a common non-negative base and differ by
``separation`` x noise; an example is 0.35 * ReLU(prototype + 2 * noise - 1):
non-negative, about 58 % zeros, norms around 30, like ReLU activations of a
network's last hidden layer, and hard enough that one worker needs several
epochs.  Splits are 70/15/15 at random.  Same seed, same numbers.
"""

import numpy as np

from mr_tl.seeding import rng


def synthetic_features(n, dim, classes, seed=0, separation=0.3, chunk=2048, fractions=(0.70, 0.15)):
    """Yield ``(ids, labels, splits, X)`` chunks of a synthetic feature set (``fractions``: of train, val)."""
    g = rng(seed, "bench-features")
    base = np.maximum(g.standard_normal(dim, dtype=np.float32), 0) * 1.5
    prototypes = base + separation * g.standard_normal((classes, dim), dtype=np.float32)
    labels = np.arange(n) % classes
    for start in range(0, n, chunk):
        y = labels[start:start + chunk]
        noise = g.standard_normal((len(y), dim), dtype=np.float32)
        X = np.float32(0.35) * np.maximum(prototypes[y] + 2 * noise - 1, 0)
        u = g.random(len(y))
        splits = np.where(u < fractions[0], "train", np.where(u < fractions[0] + fractions[1], "val", "test"))
        ids = ["c%03d/img%06d.jpg" % (label, start + i) for i, label in enumerate(y)]
        yield ids, y.astype(np.int64), list(splits), X


def synthetic_arrays(n, dim, classes, seed=0, separation=0.3):
    """The whole set in memory: ``(ids, labels, splits, X)``."""
    ids, labels, splits, blocks = [], [], [], []
    for i, y, s, X in synthetic_features(n, dim, classes, seed, separation):
        ids += i
        labels.append(y)
        splits += s
        blocks.append(X)
    return ids, np.concatenate(labels), splits, np.concatenate(blocks)


def write_feature_folder(out_dir, n, dim, classes, seed=0, parts=4, old_format=False, separation=0.3,
                         fractions=(0.70, 0.15)):
    """Write ``synthetic_features(n, dim, classes, seed)`` as a features folder, streaming (one chunk in
    memory): ``part-NNNNN`` files, the rows dealt round-robin.

    The folder is complete as featurize writes one (mr_tl.feature_store: ``_labels.json``,
    ``_summary.json`` with the records' tally, then ``_COMPLETE``), or, with ``old_format``, what
    mr_tl wrote before the scan/partition redesign: 5-field ``F id label split base64`` records and
    ``_labels.json`` only.  Returns ``{"bytes", "files", "counts": {split: n}}``.
    """
    import base64
    import json
    import os

    from mr_tl.records import FeatureRecord

    os.makedirs(out_dir, exist_ok=True)
    names = ["c%03d" % c for c in range(classes)]
    tally = None
    if not old_format:
        from mr_tl import feature_store

        tally = feature_store.RecordTally()
    files = [open(os.path.join(out_dir, "part-%05d" % p), "w", encoding="utf-8") for p in range(parts)]
    counts = {"train": 0, "val": 0, "test": 0}
    k = 0
    try:
        for ids, labels, splits, X in synthetic_features(n, dim, classes, seed, separation, fractions=fractions):
            lines = [[] for _ in range(parts)]
            for i, label, split, row in zip(ids, labels, splits, X):
                if old_format:
                    line = "F\t%s\t%d\t%s\t%s" % (i, label, split, base64.b64encode(row.astype("<f4").tobytes())
                                                   .decode("ascii"))
                else:
                    record = FeatureRecord(i, int(label), split, row)
                    line = record.to_line()
                    tally.add(record, line)
                counts[split] += 1
                lines[k % parts].append(line + "\n")
                k += 1
            for f, chunk in zip(files, lines):
                f.write("".join(chunk))
    finally:
        for f in files:
            f.close()
    if old_format:
        with open(os.path.join(out_dir, "_labels.json"), "w", encoding="utf-8") as f:
            json.dump({"format": "mr_tl.labels/1", "classes": names}, f)
    else:
        feature_store.write_metadata(None, out_dir, names, feature_store.summary("text", tally, dim))
    paths = [os.path.join(out_dir, "part-%05d" % p) for p in range(parts)]
    return {"bytes": sum(os.path.getsize(p) for p in paths), "files": parts, "counts": counts}
