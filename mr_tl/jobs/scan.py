"""Feature records -> what the driver needs to know of them, and duplicate ids.

Run by the train driver (and by featurize, evaluate and parquet to check an
output); not meant to be run by hand.

Input: a feature set (text feature/rejected records, or Parquet files with
``--input-format parquet``).

Mapper: adds every record to a :class:`mr_tl.feature_scan.FeatureScan`
(counts per split and class, dimensions, bad vectors, examples per worker
for ``--seed``/``--workers``, the digests, moment sums for
``--normalization``) and emits every id, ``i<id> <TAB> 1``; at the end its
partial scan, ``! <TAB> json``.  Combiner: adds up id counts and partial
scans.  Reducer: writes ``S <TAB> json``, the whole scan (one line), and
``D <TAB> count <TAB> id`` for an id seen more than once (at most
``MAX_LISTED`` per reducer task; all are counted), and every rejected
record as it is (``R ...``, keyed ``r<id>``).  So only ids (and rejected
records) cross the shuffle, and the output is small whatever the size of
the data.
"""

from mrjob.protocol import RawProtocol, RawValueProtocol

from mr_tl.errors import RecordError
from mr_tl.feature_scan import FeatureScan
from mr_tl.jobs.accounting import TALLY_KEY, TallyAndIdsSteps
from mr_tl.jobs.feature_input import FeatureInputJob
from mr_tl.normalization import KINDS
from mr_tl.records import escape_field, feature_line_head, unescape_field

SCAN_COUNTERS = "mr_tl scan"


class MRScanFeatures(TallyAndIdsSteps, FeatureInputJob):
    """Feature records -> one scan line and the duplicate ids (see the module docstring)."""

    COUNTERS = SCAN_COUNTERS   # the duplicate ids' counter group (TallyAndIdsSteps)

    INPUT_PROTOCOL = RawValueProtocol
    INTERNAL_PROTOCOL = RawProtocol
    OUTPUT_PROTOCOL = RawValueProtocol

    def configure_args(self):
        super().configure_args()
        self.add_passthru_arg("--seed", type=int, default=42, help="seed of the worker assignment")
        self.add_passthru_arg("--workers", type=int, default=0, help="count examples per worker (0: don't)")
        self.add_passthru_arg("--normalization", choices=KINDS, default="none",
                              help="collect moment sums of the train split for this normalization")
        self.add_passthru_arg("--classes", type=int, default=0, help="labels must be below this (0: no check)")
        self.add_passthru_arg("--dim", type=int, default=0, help="expected dimension (0: no check, no sums)")

    def steps(self):
        return [self.feature_step(mapper_init=self.init_scan, mapper_final=self.emit_scan,
                                  combiner=self.combiner, reducer_init=self.reducer_init, reducer=self.reducer)]

    def init_scan(self):
        o = self.options
        self.scan = FeatureScan(o.seed, o.workers or None, o.normalization, o.classes or None, o.dim or None)

    def map_feature_line(self, line):
        """Output: ``i<escaped id> <TAB> 1``."""
        try:
            head = feature_line_head(line)
            self.scan.add_line(line, head)
        except RecordError as e:
            self.scan.add_unreadable("%s: %s" % (self.input_name(), e))
            self.increment_counter(SCAN_COUNTERS, "unreadable lines", 1)
            return
        yield "i" + escape_field(head.id), "1"
        if head.kind == "R":
            yield "r" + escape_field(head.id), line.rstrip("\r\n")

    def emit_scan(self):
        """Output: ``! <TAB> partial scan``."""
        yield TALLY_KEY, self.scan.to_json()

    def merge_tally(self, values):
        scan = None
        for value in values:
            part = FeatureScan.from_json(value)
            scan = part if scan is None else scan.merge(part)
        return scan.to_json()


def parse_output(lines, rejected=None):
    """``(FeatureScan, [(id, count)])`` from the scan job's output lines; the rejected records'
    heads are appended to the list ``rejected`` if one is given."""
    scan, duplicates = None, []
    for line in lines:
        kind, rest = line.split("\t", 1)
        if kind == "R":
            if rejected is not None:
                rejected.append(feature_line_head(line))
        elif kind == "S":
            if scan is not None:
                raise ValueError("the scan job wrote more than one scan line")
            scan = FeatureScan.from_json(rest)
        elif kind == "D":
            count, image_id = rest.split("\t", 1)
            duplicates.append((unescape_field(image_id), int(count)))
    return scan, sorted(duplicates)


if __name__ == "__main__":
    MRScanFeatures.run()
