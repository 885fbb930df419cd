"""The run directory of one training run: what is in it and how it is written.

::

    RUN_DIR/config.json              hyperparameters, workers, runner, features fingerprint
    RUN_DIR/labels.json              class names, in label order
    RUN_DIR/checkpoints/round-000012.npz         state after round 12 (mr_tl.records.save_npz)
    RUN_DIR/checkpoints/round-000012.npz.sha256  its checksum, written after it
    RUN_DIR/metrics.jsonl            one JSON line per round (round, epoch, iteration, losses, seconds, ...)
    RUN_DIR/head.npz                 the trained head (W, b), written at the end
    RUN_DIR/evaluation/...           written by mr_tl.evaluate

Checkpoints are written to a temporary name, flushed to disk and renamed;
the checksum file is written the same way *after* the checkpoint, so a
checkpoint without a matching checksum (a crash while writing, a corrupt
disk) is never used: loading falls back to the previous good one.
"""

import contextlib
import json
import os
import re
import shutil

from mr_tl.digest import file_digest
from mr_tl.errors import InputError, RunError
from mr_tl.records import load_npz, save_npz

CHECKPOINT_RE = re.compile(r"^round-(\d{6})\.npz$")
# what config.json holds (mr_tl.training.loop writes it), as far as its readers rely on it
CONFIG_FIELDS = {"training": dict, "features": dict, "epochs": int, "rounds": int, "rounds_per_epoch": int,
                 "runner": str}
CONFIG_FEATURE_FIELDS = {"fingerprint": str, "dim": int, "classes": int, "train_examples": int,
                         "val_examples": int, "test_examples": int}




@contextlib.contextmanager
def temporary_name(path):
    """A temporary name beside ``path`` to write to; removed if the block fails (e.g. the disk is full)."""
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        yield tmp
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write(path, data):
    """Write bytes or text to ``path`` so that readers see the old file or the whole new one."""
    mode = "wb" if isinstance(data, bytes) else "w"
    with temporary_name(path) as tmp:
        with open(tmp, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def write_npz(path, meta, arrays, stale=()):
    """Write an .npz (mr_tl.records.save_npz) so that readers see the old file or the whole new one;
    ``stale``: files that must not outlive the old bytes, removed once the new ones are on disk,
    just before they take the name."""
    with temporary_name(path) as tmp:
        save_npz(tmp, meta, arrays)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        for name in stale:
            if os.path.exists(name):
                os.unlink(name)
        os.replace(tmp, path)


def replace_dir(tmp, path):
    """Put the finished folder ``tmp`` at ``path`` (in the same folder): readers see the old
    folder or the whole new one; an old ``path`` is removed only once the new one is in place."""
    old = None
    if os.path.lexists(path):
        old = "%s.old-%d" % (tmp, os.getpid())
        os.replace(path, old)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fsync_dir(path):
    """Make a folder's entries (a file just renamed into it) durable; quietly nothing where folders
    cannot be opened or synced."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RunDir:
    """Reads and writes one run directory (see the module docstring)."""

    def __init__(self, path):
        self.path = path
        self.checkpoints = os.path.join(path, "checkpoints")

    def file(self, name):
        return os.path.join(self.path, name)

    # -- config and labels ----------------------------------------------------

    def read_json(self, name):
        path = self.file(name)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            raise RunError("%s is missing; is %s a training run directory?" % (path, self.path)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunError("%s is not valid JSON: %s" % (path, e)) from None
        except OSError as e:
            raise RunError("cannot read %s: %s" % (path, e.strerror or e)) from None

    def read_config(self):
        """config.json, checked to be shaped as this version of mr_tl writes it (RunError if not)."""
        config = self.read_json("config.json")
        problems = []
        if not isinstance(config, dict):
            problems.append("expected a JSON object, found %s" % type(config).__name__)
        else:
            for key, kinds in CONFIG_FIELDS.items():
                if not isinstance(config.get(key), kinds):
                    problems.append("%r is %r" % (key, config.get(key)))
            features = config.get("features")
            for key, kinds in CONFIG_FEATURE_FIELDS.items():
                if isinstance(features, dict) and not isinstance(features.get(key), kinds):
                    problems.append("'features': %r is %r" % (key, features.get(key)))
        if problems:
            raise RunError("%s is not a configuration of this version of mr_tl (%s); was it edited, or written by "
                           "another program?" % (self.file("config.json"), "; ".join(problems[:3])))
        return config

    def write_json(self, name, obj):
        os.makedirs(self.path, exist_ok=True)
        atomic_write(self.file(name), json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n")

    def classes(self):
        from mr_tl import labels

        path = self.file("labels.json")
        if not os.path.isfile(path):
            raise RunError("%s is missing; is %s a training run directory?" % (path, self.path))
        try:
            return labels.read(path)
        except InputError as e:
            raise RunError(str(e)) from None

    # -- checkpoints ------------------------------------------------------------

    def checkpoint_path(self, round_number):
        return os.path.join(self.checkpoints, "round-%06d.npz" % round_number)

    def write_checkpoint(self, round_number, meta, arrays):
        os.makedirs(self.checkpoints, exist_ok=True)
        path = self.checkpoint_path(round_number)
        # an older checksum must never vouch for the new bytes
        write_npz(path, meta, arrays, stale=[path + ".sha256"])
        atomic_write(path + ".sha256", file_digest(path) + "\n")
        fsync_dir(self.checkpoints)
        return path

    def checkpoint_rounds(self):
        if not os.path.isdir(self.checkpoints):
            return []
        return sorted(int(m.group(1)) for m in map(CHECKPOINT_RE.match, os.listdir(self.checkpoints)) if m)

    def load_checkpoint(self, round_number):
        """``(meta, arrays)`` of one checkpoint, verified against its checksum."""
        path = self.checkpoint_path(round_number)
        try:
            with open(path + ".sha256", encoding="utf-8") as f:
                expected = f.read().strip()
        except FileNotFoundError:
            raise RunError("checkpoint %s has no checksum file (written incompletely?)" % path) from None
        actual = file_digest(path)
        if actual != expected:
            raise RunError("checkpoint %s is corrupt: sha256 %s, recorded %s" % (path, actual, expected))
        return load_npz(path)

    def latest_good_checkpoint(self, warn=print):
        """The newest checkpoint that verifies, as ``(round, meta, arrays)``, or None."""
        for round_number in reversed(self.checkpoint_rounds()):
            try:
                meta, arrays = self.load_checkpoint(round_number)
            except (RunError, OSError, ValueError) as e:
                warn("warning: skipping checkpoint of round %d: %s" % (round_number, e))
                continue
            return round_number, meta, arrays
        return None

    # -- metrics ----------------------------------------------------------------

    def append_metrics(self, record):
        os.makedirs(self.path, exist_ok=True)
        with open(self.file("metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self):
        """Metric records in file order; a half-written or malformed line is skipped."""
        out = []
        try:
            with open(self.file("metrics.jsonl"), encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(record, dict) and "round" in record:
                        out.append(record)
        except FileNotFoundError:
            pass
        return out

    def rewrite_metrics(self, records):
        atomic_write(self.file("metrics.jsonl"),
                     "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in records))

    # -- the head ---------------------------------------------------------------

    def write_arrays(self, name, meta, arrays):
        """Write an .npz of named arrays (and a JSON meta dict) atomically."""
        os.makedirs(self.path, exist_ok=True)
        path = self.file(name)
        write_npz(path, meta, arrays)
        return path

    def write_head(self, params, meta, normalization_arrays=None):
        """The trained head: its parameters (W, b; W1, b1 with a hidden layer), and the statistics of its
        feature normalization (if any)."""
        arrays = dict(params)
        arrays.update(normalization_arrays or {})
        return self.write_arrays("head.npz", meta, arrays)

    def load_head(self):
        """``(head, meta)``; the head's classes and dimensions are checked against labels.json."""
        head, meta, _ = self.load_classifier()
        return head, meta

    def load_classifier(self):
        """``(head, meta, normalizer)``: what turns a raw feature vector into class scores."""
        from mr_tl.head import head_from_arrays
        from mr_tl.normalization import Normalizer

        path = self.file("head.npz")
        if not os.path.isfile(path):
            raise RunError("%s has no head.npz: training has not finished (or use --checkpoint)" % self.path)
        try:
            meta, arrays = load_npz(path)
            head = head_from_arrays(arrays)
            normalizer = Normalizer.from_arrays(meta.get("normalization", "none"), arrays)
        except (OSError, ValueError, KeyError) as e:
            raise RunError("%s is not a head written by mr_tl.train: %s" % (path, e)) from None
        classes = self.classes()
        if head.n_classes != len(classes):
            raise RunError("head has %d classes but labels.json lists %d" % (head.n_classes, len(classes)))
        return head, meta, normalizer
