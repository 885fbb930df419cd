"""Writing features folders in tests (what featurize writes, from given records)."""

import os


def write_feature_folder(out_dir, records, classes, parts=2, dim=None):
    """A complete features folder as featurize writes one: ``part-NNNNN`` files of the records' lines
    (dealt round-robin), ``_labels.json``, ``_summary.json`` and ``_COMPLETE``."""
    from mr_tl import feature_store

    os.makedirs(out_dir, exist_ok=True)
    tally = feature_store.RecordTally()
    for p in range(parts):
        with open(os.path.join(str(out_dir), "part-%05d" % p), "w", encoding="utf-8") as f:
            for record in records[p::parts]:
                line = record.to_line()
                tally.add(record, line)
                f.write(line + "\n")
    if dim is None:
        dim = next((r.features.size for r in records if hasattr(r, "features")), 0)
    feature_store.write_metadata(None, str(out_dir), classes, feature_store.summary("text", tally, dim))
    return str(out_dir)


def rewrite_summary(out_dir):
    """Write ``_summary.json`` and ``_COMPLETE`` again for the part files as they are now (after a test
    added records to them), as featurize would have written them for that data."""
    from mr_tl import feature_store, labels
    from mr_tl.records import parse_feature_line

    tally, dim = feature_store.RecordTally(), 0
    for name in sorted(os.listdir(str(out_dir))):
        if name.startswith("part-"):
            with open(os.path.join(str(out_dir), name), encoding="utf-8") as f:
                for line in f:
                    line = line.rstrip("\n")
                    record = parse_feature_line(line)
                    tally.add(record, line)
                    dim = dim or (record.features.size if hasattr(record, "features") else 0)
    classes = labels.read(os.path.join(str(out_dir), feature_store.LABELS))
    feature_store.write_metadata(None, str(out_dir), classes, feature_store.summary("text", tally, dim))
    return str(out_dir)
