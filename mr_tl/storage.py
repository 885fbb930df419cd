"""Finding and reading job inputs and side files, on local disk or on HDFS.

mrjob's local runners read *every* file under an input folder, while
Hadoop skips names starting with ``_`` or ``.``; so the drivers expand
folders themselves into the data files a job should read (``*.tsv`` packed
shards, ``part-*`` feature files), the same way for every runner.  Side
files (``_summary.json``, ``_labels.json``) start with ``_`` so Hadoop
never mistakes them for data.
"""

import contextlib
import fnmatch
import json
import os
import posixpath
import tempfile

from mrjob.util import to_lines

from mr_tl.errors import InputError
from mr_tl.jobs.compat import cat_file
from mr_tl.paths import (  # noqa: F401  (the path helpers, defined once in mr_tl.paths)
    FEATURES_PATTERN,
    PACKED_SUFFIX,
    expand_inputs,
    folder_of,
    has_glob,
    is_dir,
    is_remote,
    is_uri,
    join,
    local_path,
    path_part,
    visible,
)


def _command_failed(e, path):
    """A InputError for an OSError of the ``hadoop`` command itself (not found, not executable)."""
    return InputError("cannot read %s: %s (give the hadoop command with --hadoop-bin, or hadoop_bin "
                         "in the mrjob.conf given with -c)" % (path, e))


def read_text(fs, path, listed=False):
    """The text of a small file through an mrjob filesystem, or None if it is missing.

    ``listed``: the caller has just seen the (remote) file in a listing, so it is
    read with a single ``hadoop fs -cat``.
    """
    if not is_remote(path):
        path = local_path(path)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except UnicodeDecodeError:
            raise InputError("%s is not UTF-8 text (not a file mr_tl wrote?)" % path) from None
    # one ``hadoop fs -ls`` (a missing path lists nothing), then one ``-cat``: every
    # hadoop command is a JVM start, so no separate exists() call
    try:
        if not listed and not any(True for _ in fs.ls(path)):
            return None
        return b"".join(cat_file(fs, path)).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("%s is not UTF-8 text (not a file mr_tl wrote?)" % path) from None
    except OSError as e:
        if e.errno is not None:  # the hadoop command could not even run
            raise _command_failed(e, path) from None
        return None  # mrjob's "Could not ls/stream ...": a directory, unreadable


def _remote_names(fs, folder):
    """Names of the files directly in a remote folder (one ``hadoop fs -ls -R``)."""
    base = path_part(folder).rstrip("/") + "/"
    names = set()
    try:
        for uri in fs.ls(folder):
            path = path_part(uri)
            if path.startswith(base) and "/" not in path[len(base):]:
                names.add(path[len(base):])
    except OSError as e:
        if e.errno is not None:
            raise _command_failed(e, folder) from None
    return names


def find_side_file(paths, names, fs=None):
    """Text of the first of ``names`` found beside the inputs (their folder), or None."""
    for path in paths:
        folder = folder_of(path)
        present = _remote_names(fs, folder) if is_remote(folder) else None
        for name in names:
            if present is not None and name not in present:
                continue  # one listing of the folder instead of a hadoop command per name
            join = posixpath.join if is_uri(folder) else os.path.join
            text = read_text(fs, join(folder, name), listed=present is not None)
            if text is not None:
                return text
    return None


def find_labels(paths, fs=None):
    """``labels.json`` text of a pack folder, or ``_labels.json`` of a features folder."""
    return find_side_file(paths, ("labels.json", "_labels.json"), fs)


PACK_ACCOUNTING = ("files_found", "images_packed", "images_rejected", "files_skipped")


def pack_accounting(paths, fs=None):
    """What the pack manifests beside the inputs say of the shards given, or None if unknown:
    ``{"images": n, "lines_digest": MultisetHash or None, "accounting": {files_found, ...}}``.

    ``lines_digest`` is the sum of the shards' recorded line digests (None if a manifest has
    none); ``accounting`` adds up the pack's own counts of every manifest involved."""
    from mr_tl.digest import MultisetHash

    images, digest, accounting, seen = 0, MultisetHash(), {k: 0 for k in PACK_ACCOUNTING}, {}
    for path in paths:
        folder = folder_of(path)
        if folder not in seen:
            text = read_text(fs, join(folder, "manifest.json"))
            if text is None:
                return None
            try:
                seen[folder] = json.loads(text)
                for k in PACK_ACCOUNTING:
                    accounting[k] += int(seen[folder].get(k, 0))
            except (ValueError, TypeError, AttributeError):
                raise InputError("%s is not a valid pack manifest" % join(folder, "manifest.json")) from None
        shards = {s["path"]: s for s in seen[folder].get("shards", [])}
        base = posixpath.basename(path.rstrip("/")) if is_uri(path) else os.path.basename(path)
        if base in shards:
            chosen = [shards[base]]
        elif not has_glob(path) and (is_uri(path) or os.path.isdir(path)):
            chosen = list(shards.values())
        else:
            return None
        for shard in chosen:
            images += int(shard["images"])
            if digest is not None and shard.get("lines_digest"):
                digest.update(MultisetHash.from_hex(shard["lines_digest"]))
            else:
                digest = None
    return {"images": images, "lines_digest": digest, "accounting": accounting}


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


def _local_cat(paths):
    """Bytes of local files (compressed ones decompressed), ``b""`` between files as mrjob does."""
    from mrjob.cat import decompress

    for i, path in enumerate(paths):
        if i:
            yield b""
        with open(path, "rb") as f:
            yield from decompress(f, path)


COMPRESSED_SUFFIXES = (".gz", ".bz2", ".deflate", ".snappy", ".lz4", ".zst", ".xz")


def _output_chunks(runner):
    """Bytes of a finished job's output files, like ``runner.cat_output()`` but
    without a hadoop command per file: a ``file://`` output folder (Hadoop's
    standalone mode) is read directly, a remote one with one ``hadoop fs -cat``
    of all its (uncompressed) part files.  Names starting with ``_`` or ``.``
    are skipped, as Hadoop and mrjob do."""
    output_dir = runner.get_output_dir() or ""
    if output_dir.startswith("file://"):
        root = local_path(output_dir)
        files = []
        for directory, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if visible(d))
            files += [os.path.join(directory, n) for n in sorted(names) if visible(n)]
        return _local_cat(files)
    hadoop = _hadoop_fs(runner.fs, output_dir) if is_remote(output_dir) else None
    if hadoop is None:
        return runner.cat_output()
    base = path_part(output_dir).rstrip("/") + "/"
    files = []
    for uri in sorted(runner.fs.ls(output_dir)):
        rel = path_part(uri)[len(base):]
        if path_part(uri).startswith(base) and all(visible(part) for part in rel.split("/") if part):
            files.append(uri)
    if not files:
        return iter(())
    if any(f.endswith(COMPRESSED_SUFFIXES) for f in files):
        return runner.cat_output()
    # a few hundred paths per command line
    return (chunk for i in range(0, len(files), 500) for chunk in _hadoop_cat(hadoop, files[i:i + 500]))


def cat_lines(runner):
    """Every output line of a finished job, as text without the newline."""
    for line in to_lines(_output_chunks(runner)):
        if line:
            yield line.decode("utf-8").rstrip("\r\n")


def filesystem(hadoop_bin=None):
    """The driver's filesystem for local paths and URIs: ``file://`` in Python, ``hdfs://`` over
    WebHDFS (no JVM per call), anything else (and HDFS without WebHDFS) through ``hadoop fs``
    (mr_tl.fastfs).

    ``hadoop_bin``: the hadoop command, a string (split on spaces) or a list
    of arguments as in mrjob's runner options; None finds it like mrjob does
    (``$HADOOP_HOME/bin``, ``PATH``...).
    """
    from mr_tl.fastfs import filesystem as fast_filesystem

    return fast_filesystem(hadoop_bin)


def list_data_files(fs, paths, pattern):
    """The data files of ``paths`` (folders expanded to visible ``pattern`` files), sorted per folder."""
    out = []
    for path in paths:
        if not is_remote(path):
            out += expand_inputs([path], pattern)
            continue
        try:
            found = sorted(fs.ls(path))
        except OSError as e:
            if e.errno is not None:
                raise _command_failed(e, path) from None
            raise InputError("cannot list %s" % path) from None
        if not found:
            raise InputError("input %s does not exist" % path)
        if len(found) == 1 and found[0].rstrip("/") == path.rstrip("/"):
            out.append(path)  # a single file
            continue
        root = path.rstrip("/")
        keep = [f for f in found if fnmatch.fnmatch(posixpath.basename(f), pattern)
                and all(visible(part) for part in f[len(root):].split("/") if part)]
        if not keep:
            raise InputError("%s has no %s files" % (path, pattern))
        out += keep
    return out


def _hadoop_cat(hadoop, paths):
    """Bytes of remote files through one ``hadoop fs -cat`` (one .gz file is decompressed;
    several files must be uncompressed text).  Unlike mrjob's ``cat()``, a reader that stops early
    (first_feature_dim) does not leave the JVM running."""
    from subprocess import PIPE, Popen

    from mrjob.cat import decompress

    paths = [paths] if isinstance(paths, str) else list(paths)
    path = paths[0] if len(paths) == 1 else "%s (and %d more)" % (paths[0], len(paths) - 1)
    try:
        proc = Popen(hadoop.get_hadoop_bin() + ["fs", "-cat"] + paths, stdout=PIPE, stderr=PIPE)
    except OSError as e:
        raise _command_failed(e, path) from None
    finished = False
    try:
        if len(paths) == 1:
            yield from decompress(proc.stdout, paths[0])
        else:
            yield from iter(lambda: proc.stdout.read(1 << 16), b"")
        finished = True
    finally:
        proc.stdout.close()  # a hadoop command still writing gets EPIPE (also behind a wrapper script)
        if not finished:
            proc.kill()
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        returncode = proc.wait()
    if returncode != 0:
        raise IOError("could not read %s (hadoop fs -cat exit %d): %s" % (path, returncode, err[-500:]))


def _remote_errors(chunks, path):
    """``chunks`` of a remote file, with a hadoop command that cannot be started (an OSError naming
    the executable: WebHDFS turned out unavailable and ``hadoop fs`` took over) reported as
    :func:`_command_failed`; WebHDFS's own errors name no file and pass unchanged."""
    try:
        yield from chunks
    except OSError as e:
        if e.errno is None or not e.filename:
            raise
        raise _command_failed(e, path) from None


def iter_lines(fs, paths):
    """Lines (text, without newline) of every file in ``paths``, in order; .gz files are decompressed.

    A remote path may be a glob (listed first); a remote path without one
    must be a file (as :func:`list_data_files` and :func:`expand_inputs`
    return them): it is read with a single ``hadoop fs -cat``.
    """
    for path in paths:
        hadoop = _hadoop_fs(fs, path) if is_remote(path) else None
        if hadoop is None:
            sources = [_remote_errors(fs.cat(path), path) if is_remote(path) else fs.cat(path)]
        else:
            files = sorted(fs.ls(path)) if has_glob(path) else [path]
            sources = (_hadoop_cat(hadoop, f) for f in files)
        for chunks in sources:
            for line in to_lines(chunks):
                yield line.decode("utf-8").rstrip("\r\n")


def _hadoop_fs(fs, path):
    """The ``hadoop fs`` sub-filesystem of ``fs`` if ``path`` is answered by ``hadoop fs`` (a JVM per
    call: worth batching several files into one command), else None."""
    from mr_tl.jobs.compat import jvm_free

    hadoop = getattr(fs, "hadoop", None)
    if hadoop is None or not hadoop.can_handle_path(path) or jvm_free(fs, path):
        return None
    return hadoop


def put_files(fs, local_paths, dest_dir):
    """Copy local files into the folder ``dest_dir`` (local path or URI), replacing files of the same
    names; returns their new paths.  On HDFS that is one ``hadoop fs -mkdir -p`` and one
    ``hadoop fs -put -f`` for all the files (every hadoop command starts a JVM)."""
    join = (lambda a, b: a.rstrip("/") + "/" + b) if is_uri(dest_dir) else os.path.join
    dests = [join(dest_dir, os.path.basename(p)) for p in local_paths]
    hadoop = _hadoop_fs(fs, dest_dir) if is_remote(dest_dir) else None
    if hadoop is None or not local_paths:
        for path, dest in zip(local_paths, dests):
            put_file(fs, path, dest)
        return dests
    fs.mkdir(dest_dir)
    hadoop.invoke_hadoop(["fs", "-put", "-f"] + list(local_paths) + [dest_dir.rstrip("/")])
    return dests


def put_file(fs, local_path, dest):
    """Copy a local file to ``dest`` (local path or URI), replacing what is there."""
    if not is_remote(dest):
        dest = local_path(dest)
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
    fs.mkdir(posixpath.dirname(dest))
    hadoop = _hadoop_fs(fs, dest)
    if hadoop is not None:
        hadoop.invoke_hadoop(["fs", "-put", "-f", local_path, dest])
        return
    if fs.exists(dest):
        fs.rm(dest)
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


def write_text(fs, path, text):
    """Write a small text file (local: atomically; remote: through a temporary local file)."""
    if not is_remote(path):
        path = local_path(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = "%s.tmp-%d" % (path, os.getpid())
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:   # e.g. the disk is full: leave nothing half-written behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return
    with tempfile.TemporaryDirectory(prefix="mr_tl-put-") as tmp:
        local = os.path.join(tmp, posixpath.basename(path))
        with open(local, "w", encoding="utf-8") as f:
            f.write(text)
        put_file(fs, local, path)


def remove(fs, path):
    """Remove a file or folder (local path or URI) if it exists."""
    if not is_remote(path):
        path = local_path(path)
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil

            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
        return
    if fs.exists(path):
        fs.rm(path)


def exists(fs, path):
    return os.path.exists(local_path(path)) if not is_remote(path) else fs.exists(path)


def file_names(fs, folder, side_files=False):
    """Names of the files directly in ``folder`` (local path or URI); empty if it is missing.

    Names starting with ``.`` are never listed, names starting with ``_`` (side files) only
    with ``side_files``."""
    def wanted(name):
        return visible(name) or (side_files and name.startswith("_"))

    if not is_remote(folder):
        folder = local_path(folder)
        if not os.path.isdir(folder):
            return []
        return sorted(n for n in os.listdir(folder) if wanted(n) and os.path.isfile(os.path.join(folder, n)))
    return sorted(n for n in _remote_names(fs, folder) if wanted(n))


def labels_beside(fs, inputs):
    """``[(input, classes)]``: the labels file beside each input (``labels.json`` of a pack folder,
    ``_labels.json`` of a features folder); InputError naming an input that has none."""
    from mr_tl import labels

    found = []
    for path in inputs:
        text = find_labels([path], fs)
        if text is None:
            raise InputError("no labels file beside %s (pack writes labels.json, featurize _labels.json)" % path)
        found.append((path, labels.parse(text, "the labels file beside %s" % path)))
    return found
