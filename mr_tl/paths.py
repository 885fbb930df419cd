"""Paths of local files and URIs, and which files of a folder a job reads (no I/O but local listing).

mrjob's local runners read *every* file under an input folder, while
Hadoop skips names starting with ``_`` or ``.``; so the drivers expand
folders themselves into the data files a job should read (``*.tsv`` packed
shards, ``part-*`` feature files), the same way for every runner.  Side
files (``_summary.json``, ``_labels.json``) start with ``_`` so Hadoop
never mistakes them for data.
"""

import fnmatch
import glob
import os
import posixpath
from collections.abc import Iterable

from mr_tl.errors import InputError

PACKED_SUFFIX = ".tsv"
FEATURES_PATTERN = "part-*"


def is_uri(path: str) -> bool:
    return "://" in path


def is_remote(path: str) -> bool:
    """A URI that is not ``file://`` (``hdfs://``, ``s3://``...): read and written through ``hadoop fs``."""
    return is_uri(path) and not path.startswith("file://")


def local_path(path: str) -> str:
    """The local file name of a local path or ``file://`` URI."""
    return path[len("file://"):] if path.startswith("file://") else path


def is_dir(path: str) -> bool:
    """Whether a local path (or ``file://`` URI) is a folder."""
    return os.path.isdir(local_path(path))


def has_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def visible(name: str) -> bool:
    return not name.startswith(("_", "."))


def expand_inputs(paths: Iterable[str], pattern: str) -> list[str]:
    """Input paths for a job: local folders become their matching, visible files.

    ``pattern`` is a suffix like ``.tsv`` or a glob like ``part-*``.  Remote
    folders (``hdfs://...``) become ``folder/pattern`` globs, which Hadoop
    and mrjob both understand.  A local path that does not exist is an error.
    """
    glob_pattern = ("*" + pattern) if not has_glob(pattern) else pattern
    out: list[str] = []
    for path in paths:
        if is_remote(path):
            if has_glob(path) or fnmatch.fnmatch(posixpath.basename(path.rstrip("/")), glob_pattern):
                out.append(path)
            else:
                out.append(path.rstrip("/") + "/" + glob_pattern)
            continue
        local = path[len("file://"):] if path.startswith("file://") else path
        if has_glob(local):
            matches = sorted(p for p in glob.glob(local) if visible(os.path.basename(p)))
            if not matches:
                raise InputError("no input matches %s" % path)
            out += matches
        elif os.path.isdir(local):
            matches = sorted(os.path.join(local, n) for n in os.listdir(local)
                             if visible(n) and fnmatch.fnmatch(n, glob_pattern))
            if not matches:
                raise InputError("folder %s has no %s files" % (path, glob_pattern))
            out += matches
        elif os.path.isfile(local):
            out.append(local)
        else:
            raise InputError("input %s does not exist" % path)
    return out


def folder_of(path: str) -> str:
    if has_glob(path):
        return posixpath.dirname(path) if is_uri(path) else os.path.dirname(path)
    if is_uri(path):
        base = posixpath.basename(path.rstrip("/"))
        return posixpath.dirname(path.rstrip("/")) if "." in base else path.rstrip("/")
    return path if os.path.isdir(path) else os.path.dirname(path)


def path_part(uri: str) -> str:
    """``/a/b`` of ``hdfs://host:port/a/b``."""
    rest = uri.split("://", 1)[1] if is_uri(uri) else uri
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"


def join(folder: str, name: str) -> str:
    """``folder/name`` for a local path or a URI."""
    return folder.rstrip("/") + "/" + name if is_uri(folder) else os.path.join(folder, name)
