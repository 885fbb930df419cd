"""Finding and reading job inputs and side files, on local disk or on HDFS.

mrjob's local runners read *every* file under an input folder, while
Hadoop skips names starting with ``_`` or ``.``; so the drivers expand
folders themselves into the data files a job should read (``*.tsv`` packed
shards, ``part-*`` feature files), the same way for every runner.  Side
files (``_summary.json``, ``_labels.json``) start with ``_`` so Hadoop
never mistakes them for data.
"""

import fnmatch
import glob
import json
import os
import posixpath
import tempfile

from mrjob.util import to_lines

from mr_tl.job import JobInputError

PACKED_SUFFIX = ".tsv"
FEATURES_PATTERN = "part-*"


def is_uri(path):
    return "://" in path


def _has_glob(path):
    return any(c in path for c in "*?[")


def _visible(name):
    return not name.startswith(("_", "."))


def expand_inputs(paths, pattern):
    """Input paths for a job: local folders become their matching, visible files.

    ``pattern`` is a suffix like ``.tsv`` or a glob like ``part-*``.  Remote
    folders (``hdfs://...``) become ``folder/pattern`` globs, which Hadoop
    and mrjob both understand.  A local path that does not exist is an error.
    """
    glob_pattern = ("*" + pattern) if not _has_glob(pattern) else pattern
    out = []
    for path in paths:
        if is_uri(path) and not path.startswith("file://"):
            if _has_glob(path) or posixpath.basename(path.rstrip("/")).endswith(pattern.lstrip("*")):
                out.append(path)
            else:
                out.append(path.rstrip("/") + "/" + glob_pattern)
            continue
        local = path[len("file://"):] if path.startswith("file://") else path
        if _has_glob(local):
            matches = sorted(p for p in glob.glob(local) if _visible(os.path.basename(p)))
            if not matches:
                raise JobInputError("no input matches %s" % path)
            out += matches
        elif os.path.isdir(local):
            matches = sorted(os.path.join(local, n) for n in os.listdir(local)
                             if _visible(n) and fnmatch.fnmatch(n, glob_pattern))
            if not matches:
                raise JobInputError("folder %s has no %s files" % (path, glob_pattern))
            out += matches
        elif os.path.isfile(local):
            out.append(local)
        else:
            raise JobInputError("input %s does not exist" % path)
    return out


def _folder_of(path):
    if _has_glob(path):
        return posixpath.dirname(path) if is_uri(path) else os.path.dirname(path)
    if is_uri(path):
        base = posixpath.basename(path.rstrip("/"))
        return posixpath.dirname(path.rstrip("/")) if "." in base else path.rstrip("/")
    return path if os.path.isdir(path) else os.path.dirname(path)


def read_text(fs, path):
    """The text of a small file through an mrjob filesystem, or None if it is missing."""
    if not is_uri(path):
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            return f.read()
    try:
        if not fs.exists(path):
            return None
        return b"".join(fs.cat(path)).decode("utf-8")
    except (IOError, OSError):
        return None


def find_side_file(paths, names, fs=None):
    """Text of the first of ``names`` found beside the inputs (their folder), or None."""
    for path in paths:
        folder = _folder_of(path)
        for name in names:
            join = posixpath.join if is_uri(folder) else os.path.join
            text = read_text(fs, join(folder, name))
            if text is not None:
                return text
    return None


def find_labels(paths, fs=None):
    """``labels.json`` text of a pack folder, or ``_labels.json`` of a features folder."""
    return find_side_file(paths, ("labels.json", "_labels.json"), fs)


def expected_images(paths, fs=None):
    """Images the inputs hold according to their pack manifest, or None if unknown."""
    total = 0
    for path in paths:
        folder = _folder_of(path)
        join = posixpath.join if is_uri(folder) else os.path.join
        text = read_text(fs, join(folder, "manifest.json"))
        if text is None:
            return None
        shards = {s["path"]: s["images"] for s in json.loads(text)["shards"]}
        base = posixpath.basename(path.rstrip("/")) if is_uri(path) else os.path.basename(path)
        if base in shards:
            total += shards[base]
        elif not _has_glob(path) and (is_uri(path) or os.path.isdir(path)):
            total += sum(shards.values())
        else:
            return None
    return total


def write_side_file(runner, name, text):
    """Write ``name`` into the job's output folder (local or remote)."""
    dest_dir = runner.get_output_dir()
    if not is_uri(dest_dir) or dest_dir.startswith("file://"):
        local_dir = dest_dir[len("file://"):] if dest_dir.startswith("file://") else dest_dir
        with open(os.path.join(local_dir, name), "w", encoding="utf-8") as f:
            f.write(text)
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, name)
        with open(local, "w", encoding="utf-8") as f:
            f.write(text)
        runner.fs.put(local, posixpath.join(dest_dir, name))


def cat_lines(runner):
    """Every output line of a finished job, as text without the newline."""
    for line in to_lines(runner.cat_output()):
        if line:
            yield line.decode("utf-8").rstrip("\r\n")


def filesystem(hadoop_bin=None):
    """An mrjob filesystem for local paths and hdfs:// URIs (through ``hadoop fs``)."""
    from mrjob.fs.composite import CompositeFilesystem
    from mrjob.fs.hadoop import HadoopFilesystem
    from mrjob.fs.local import LocalFilesystem

    fs = CompositeFilesystem()
    fs.add_fs("hadoop", HadoopFilesystem(hadoop_bin.split() if hadoop_bin else None))
    fs.add_fs("local", LocalFilesystem())
    return fs


def list_data_files(fs, paths, pattern):
    """The data files of ``paths`` (folders expanded to visible ``pattern`` files), sorted per folder."""
    out = []
    for path in paths:
        if not is_uri(path) or path.startswith("file://"):
            out += expand_inputs([path], pattern)
            continue
        found = sorted(fs.ls(path))
        if len(found) == 1 and found[0].rstrip("/") == path.rstrip("/"):
            out.append(path)  # a single file
            continue
        root = path.rstrip("/")
        keep = [f for f in found if fnmatch.fnmatch(posixpath.basename(f), pattern)
                and all(_visible(part) for part in f[len(root):].split("/") if part)]
        if not keep:
            raise JobInputError("%s has no %s files" % (path, pattern))
        out += keep
    return out


def iter_lines(fs, paths):
    """Lines (text, without newline) of every file in ``paths``, in order; .gz files are decompressed."""
    for path in paths:
        for line in to_lines(fs.cat(path)):
            yield line.decode("utf-8").rstrip("\r\n")


def put_file(fs, local_path, dest):
    """Copy a local file to ``dest`` (local path or URI), replacing what is there."""
    if not is_uri(dest) or dest.startswith("file://"):
        dest = dest[len("file://"):] if dest.startswith("file://") else dest
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        tmp = dest + ".tmp"
        with open(local_path, "rb") as src, open(tmp, "wb") as out:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                out.write(block)
        os.replace(tmp, dest)
        return
    if fs.exists(dest):
        fs.rm(dest)
    fs.mkdir(posixpath.dirname(dest))
    fs.put(local_path, dest)


def first_feature_dim(fs, paths):
    """Dimension of the first feature record in ``paths``, or None if there is none."""
    from mr_tl.records import FeatureRecord, parse_feature_line

    for line in iter_lines(fs, paths):
        if line.startswith("F\t"):
            record = parse_feature_line(line)
            if isinstance(record, FeatureRecord):
                return record.features.size
    return None
