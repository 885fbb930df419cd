"""Records of a job's output -> counts per kind, their digest, duplicate ids, the rejected records.

Run by predict to check its output folder (featurize uses the scan job,
which also knows feature vectors); not meant to be run by hand.

Input: record lines whose first field is their kind (``P``, ``F``, ``R``...)
and whose second is an escaped image id.  Mapper: counts lines per kind
and adds every line to a :class:`~mr_tl.digest.MultisetHash`; emits
``i<id> <TAB> 1`` per line, every rejected record as it is (``r<id>``), and
at the end its partial tally (``! <TAB> json``).  Combiner: adds up.
Reducer: ``S <TAB> json`` (the whole tally, one line), ``D <TAB> count <TAB> id``
per id seen more than once (at most ``MAX_LISTED`` per reducer task), and
the rejected records.  Only ids and rejected records cross the shuffle.
"""

import json

from mrjob.protocol import RawProtocol, RawValueProtocol

from mr_tl.digest import MultisetHash
from mr_tl.jobs.accounting import TALLY_KEY, TallyAndIdsSteps
from mr_tl.jobs.base import MRTLJob
from mr_tl.records import feature_line_head, unescape_field

UNREADABLE = "?"   # the kind of a line without a tab


class MRCheckRecords(TallyAndIdsSteps, MRTLJob):
    """Record lines -> one tally line, the duplicate ids, the rejected records (see the module docstring)."""

    INPUT_PROTOCOL = RawValueProtocol
    INTERNAL_PROTOCOL = RawProtocol
    OUTPUT_PROTOCOL = RawValueProtocol

    def mapper_init(self):
        self.kinds, self.digest = {}, MultisetHash()

    def mapper(self, _, line):
        line = line.rstrip("\r\n")
        if not line:
            return
        fields = line.split("\t", 2)
        kind = fields[0] if len(fields) > 1 else UNREADABLE
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.digest.add(line)
        if kind != UNREADABLE:
            yield "i" + fields[1], "1"
        if kind == "R":
            yield "r" + fields[1], line

    def mapper_final(self):
        yield TALLY_KEY, json.dumps({"kinds": self.kinds, "digest": self.digest.lanes}, sort_keys=True)

    def merge_tally(self, values):
        kinds, digest = {}, MultisetHash()
        for value in values:
            part = json.loads(value)
            for k, n in part["kinds"].items():
                kinds[k] = kinds.get(k, 0) + n
            digest.update(MultisetHash(part["digest"]))
        return json.dumps({"kinds": kinds, "digest": digest.lanes}, sort_keys=True)


def parse_output(lines):
    """``(kinds {kind: count}, MultisetHash, [(id, count)], [RecordHead of each rejected record])`` of the
    check job's output lines; kinds is None if the job wrote no tally (no output at all)."""
    kinds, digest, duplicates, rejected = None, MultisetHash(), [], []
    for line in lines:
        kind, rest = line.split("\t", 1)
        if kind == "S":
            part = json.loads(rest)
            kinds = {} if kinds is None else kinds
            for k, n in part["kinds"].items():
                kinds[k] = kinds.get(k, 0) + n
            digest.update(MultisetHash(part["digest"]))
        elif kind == "D":
            count, image_id = rest.split("\t", 1)
            duplicates.append((unescape_field(image_id), int(count)))
        elif kind == "R":
            rejected.append(feature_line_head(line))
    return kinds, digest, sorted(duplicates), rejected


if __name__ == "__main__":
    MRCheckRecords.run()
