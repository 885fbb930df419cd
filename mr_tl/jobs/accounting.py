"""What a job that turns every input record into one output record must account for, in one place.

Featurize (packed images -> feature records) and predict (packed images or
feature records -> predictions) share it.  Their map tasks count, through
a :class:`TaskTally`, every input line (and add it to a
:class:`~mr_tl.digest.MultisetHash`), every record they write (and its
digest), and every rejected image with its reason; Hadoop adds the
counters up over tasks and attempts that succeeded.  When the job has
ended, the driver (:func:`check`) compares:

* the lines the tasks read with what the input's own record says of them:
  the pack manifest (images per shard, ``lines_digest``) or the summary
  of a features folder (records, digest);
* done + rejected with what was read (``done`` may have several parts:
  featurized + reused);
* what the tasks wrote with what a check job finds in the output folder
  (same counts, same digest, no id twice);

and :func:`fail_unless_complete` refuses to mark the output complete
(JobFailed, nothing written) if anything differs.  :func:`log_result`
prints the one-paragraph account every such command ends with.
"""

import logging
from dataclasses import dataclass, field

from mr_tl.digest import MultisetHash
from mr_tl.errors import JobFailed

log = logging.getLogger("mr_tl")

COUNTERS = "mr_tl"
REJECTED = "mr_tl rejected"
INPUT_DIGEST = "mr_tl input digest"
OUTPUT_DIGEST = "mr_tl output digest"
MAX_LOGGED = 20


class TaskTally:
    """A map task's side of the accounting (see the module docstring)."""

    def __init__(self, job):
        self.job = job
        self.input_digest, self.output_digest = MultisetHash(), MultisetHash()

    def read(self, line):
        """One input line (counted, and added to the input digest without its line ending)."""
        self.job.increment_counter(COUNTERS, "input", 1)
        self.input_digest.add(line.rstrip("\r\n"))

    def rejected(self, reason):
        self.job.increment_counter(REJECTED, reason, 1)
        self.job.increment_counter(COUNTERS, "rejected", 1)

    def done(self, what, n=1):
        if n:
            self.job.increment_counter(COUNTERS, what, n)

    def out(self, record_or_line):
        """``(None, line)`` to yield for a record (or a line) written; adds it to the output digest."""
        line = record_or_line if isinstance(record_or_line, str) else record_or_line.to_line()
        self.output_digest.add(line)
        return None, line

    def flush(self):
        """Report the digests as counters (call once, at the end of the task)."""
        for group, digest in ((INPUT_DIGEST, self.input_digest), (OUTPUT_DIGEST, self.output_digest)):
            for name, lane in digest.counters().items():
                self.job.increment_counter(group, name, lane)


@dataclass
class JobTally:
    """What the tasks of a finished job counted (:meth:`from_counters`)."""

    read: int
    rejected: int
    done: dict                  # {"featurized": n, "reused": m} or {"predicted": n}
    reasons: dict
    input_digest: MultisetHash
    written: MultisetHash

    @classmethod
    def from_counters(cls, counters, done_names):
        main = counters.get(COUNTERS, {})
        return cls(main.get("input", 0), main.get("rejected", 0), {n: main.get(n, 0) for n in done_names},
                   dict(sorted(counters.get(REJECTED, {}).items())),
                   MultisetHash.from_counters(counters.get(INPUT_DIGEST, {})),
                   MultisetHash.from_counters(counters.get(OUTPUT_DIGEST, {})))

    @property
    def total_done(self):
        return sum(self.done.values())


@dataclass
class Expected:
    """What the inputs' own record says the tasks must read: ``images`` lines whose multiset digest is
    ``digest`` (None: not recorded), according to ``source`` (e.g. "the pack manifest")."""

    images: int
    digest: object
    source: str
    changed_hint: str = "a file was changed after it was written"
    inputs: str = "the inputs"


@dataclass
class OutputFound:
    """What a check job found in the output folder."""

    done: int
    rejected: int
    digest: MultisetHash
    duplicates: list = field(default_factory=list)    # [(id, count)]


def check(tally, expected, found, done_word):
    """The problems (a list of sentences, empty if none) of a finished job: ``tally`` (JobTally) against
    ``expected`` (Expected or None) and ``found`` (OutputFound or None: no output readable).
    ``done_word`` names the records of the output: "featurized", "predicted"."""
    problems = []
    if expected is not None and tally.read != expected.images:
        problems.append("the tasks read %d images, %s lists %d" % (tally.read, expected.source, expected.images))
    elif expected is not None and expected.digest is not None and tally.input_digest != expected.digest:
        problems.append("%s are not what %s recorded (%s)" % (expected.inputs, expected.source,
                                                              expected.changed_hint))
    if tally.total_done + tally.rejected != tally.read:
        parts = " + ".join("%s %d" % kv for kv in tally.done.items())
        problems.append("%s + rejected %d != input %d" % (parts, tally.rejected, tally.read))
    if found is None or found.done != tally.total_done or found.rejected != tally.rejected \
            or found.digest != tally.written:
        same = found is not None and found.done == tally.total_done and found.rejected == tally.rejected
        held = "no" if found is None else "%d %s and %d rejected" % (found.done, done_word, found.rejected)
        problems.append("the output holds %s records, the tasks wrote %d %s and %d rejected%s"
                        % (held, tally.total_done, done_word, tally.rejected,
                           " (same counts, other content)" if same else ""))
    if found is not None and found.duplicates:
        problems.append("%d image ids appear more than once in the output, e.g. %r"
                        % (len(found.duplicates), found.duplicates[0][0]))
    return problems


def fail_unless_complete(output_dir, problems):
    """JobFailed naming every problem, if there is one: the output is then never marked complete."""
    if problems:
        raise JobFailed("the output in %s is not marked complete: %s" % (output_dir, "; ".join(problems)))


def rejected_list(heads):
    """The summary's list of rejected images, from the rejected records' heads, sorted by id."""
    return [{"id": h.id, "label": h.label, "split": h.split, "reason": h.reason, "detail": h.detail}
            for h in sorted(heads, key=lambda h: h.id)]


def log_result(tally, done_word, seconds, output_dir, rejected, pack=None):
    """``featurized 46, rejected 2 (corrupt 2) of 48 images in 3.1 s -> OUT``, the first rejected images,
    and the pack's own accounting when known."""
    reasons = tally.reasons
    done = ", ".join("%s %d" % kv for kv in tally.done.items()) if len(tally.done) > 1 else \
        "%s %d" % (done_word, tally.total_done)
    log.info("%s, rejected %d%s of %d images in %.1f s -> %s", done, tally.rejected,
             " (%s)" % ", ".join("%s %d" % kv for kv in reasons.items()) if reasons else "", tally.read, seconds,
             output_dir)
    for r in rejected[:MAX_LOGGED]:
        log.info("  rejected %s: %s %s", r["id"], r["reason"], r["detail"])
    if len(rejected) > MAX_LOGGED:
        log.info("  ... %d more in %s/_summary.json", len(rejected) - MAX_LOGGED, output_dir)
    if pack is not None:
        a = pack["accounting"]
        log.info("  (pack: %d files found, %d packed, %d rejected, %d skipped; see manifest.json)",
                 a["files_found"], a["images_packed"], a["images_rejected"], a["files_skipped"])


def pack_expected(pack):
    """:class:`Expected` of ``storage.pack_accounting``'s result (None if unknown)."""
    if pack is None:
        return None
    return Expected(pack["images"], pack["lines_digest"], "the pack manifest",
                    "a shard was changed after packing: check the sha256 of each shard in manifest.json",
                    "the packed shards")


# -- the check jobs' shuffle: a tally, every id, the rejected records ------------------------------

TALLY_KEY = "!"     # sorts before every "i..." and "r..." key
MAX_LISTED = 100    # duplicated ids listed per reducer task (all are counted)


class TallyAndIdsSteps:
    """The combiner and reducer of a job that checks records (jobs/scan.py, jobs/check_records.py).

    Its mapper emits ``! <TAB> partial tally`` once per task, ``i<id> <TAB> 1`` per record and
    ``r<id> <TAB> line`` per rejected record.  Output: ``S <TAB> tally`` (one line in all), the
    rejected records' lines, and ``D <TAB> count <TAB> id`` per id seen more than once (counter
    ``DUPLICATES_COUNTER`` of group ``COUNTERS``).  A subclass merges partial tallies in
    :meth:`merge_tally` (JSON text in, JSON text out).
    """

    COUNTERS = "mr_tl check"

    def merge_tally(self, values):
        raise NotImplementedError

    def combiner(self, key, values):
        if key == TALLY_KEY:
            yield key, self.merge_tally(values)
        elif key.startswith("r"):
            yield from ((key, value) for value in values)
        else:
            yield key, str(sum(int(v) for v in values))

    def reducer_init(self):
        self.listed = 0

    def reducer(self, key, values):
        if key == TALLY_KEY:
            yield None, "S\t" + self.merge_tally(values)
        elif key.startswith("r"):
            yield from ((None, value) for value in values)
        else:
            count = sum(int(v) for v in values)
            if count > 1:
                self.increment_counter(self.COUNTERS, "duplicate ids", 1)
                if self.listed < MAX_LISTED:
                    self.listed += 1
                    yield None, "D\t%d\t%s" % (count, key[1:])
