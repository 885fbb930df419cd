"""One long-lived filesystem client for the driver: no JVM per file operation.

Every ``hadoop fs`` command starts a JVM (0.6-1 s here); mrjob's
:class:`~mrjob.fs.hadoop.HadoopFilesystem` runs one per ``ls``, ``mkdir``,
``put``, ``rm``, ``cat`` and ``hadoop version``, and a training round made
a dozen of them besides its job (``bench/round_cost.py``).  This module
answers the same calls in the driver's own process:

:class:`LocalURIFilesystem`  ``file://`` URIs (Hadoop's standalone mode, or
                             local files on any cluster) with plain Python
                             file operations, the way Hadoop's local
                             ``ChecksumFileSystem`` shows them: ``.NAME.crc``
                             files are hidden, and removed or invalidated
                             when the file they belong to is removed or
                             written.
:class:`WebHDFSFilesystem`   ``hdfs://`` URIs of the default NameNode over
                             WebHDFS (HTTP, standard library only; one
                             keep-alive connection per host).  The NameNode's
                             HTTP address is a constructor argument, or
                             ``$MR_TL_WEBHDFS_URL``, or read from the
                             cluster's configuration (``dfs.namenode.http-address``
                             and ``fs.defaultFS`` in the folder ``hadoop
                             envvars`` names, else ``$HADOOP_CONF_DIR``, or at
                             worst one ``GetConf`` JVM per key and process).
                             If WebHDFS cannot
                             be used (switched off, Kerberos/SPNEGO, HA
                             nameservice, a DataNode the driver cannot reach)
                             it raises :class:`WebHDFSUnavailable` and
                             :func:`filesystem` falls back to ``hadoop fs``
                             for good.
:class:`CachedVersionHadoopFilesystem`  mrjob's ``hadoop fs`` filesystem with
                             ``hadoop version`` asked once per process and
                             hadoop command, not once per runner.

:func:`filesystem` puts them in front of mrjob's filesystems in one
:class:`~mrjob.fs.composite.CompositeFilesystem` (attribute names ``fast_local``,
``webhdfs``, ``hadoop``, ``local``; ``fs.hadoop`` stays mrjob's, so code
that runs ``hadoop`` itself keeps working).

Answers are those of :class:`~mrjob.fs.hadoop.HadoopFilesystem` for the
same paths (``tests/engines/test_fastfs_cluster.py`` compares them on real
Hadoop): ``ls`` expands Hadoop globs (``* ? [a-z] [^a] {a,b} \\``) and
lists files only, recursively, as URIs of the form given
(``hdfs:///x`` or ``hdfs://host:port/x``); a missing path lists nothing,
``exists`` is false, ``du`` is 0, ``rm`` does nothing.  ``put`` and
``touchz`` need the parent folder to exist, as ``hadoop fs`` does.  One
difference: where ``hadoop fs`` fails, mrjob raises ``CalledProcessError``
for ``put`` and ``IOError`` without an errno for the rest; these raise
``OSError`` with an errno (``FileExistsError``, ``FileNotFoundError``, ...).
(``mr_tl.storage`` takes an errno to mean "the hadoop command could not
run": see :func:`mr_tl.jobs.compat.jvm_free` for where it uses this module instead.)

:class:`mr_tl.jobs.compat_runners.FastHadoopJobRunner` (what ``-r hadoop`` runs, see
``bench/RESULTS.md``) is mrjob's Hadoop runner on this filesystem.
"""

import errno
import getpass
import http.client
import json
import logging
import os
import posixpath
import re
import shutil
import subprocess
import threading
import urllib.parse
import xml.etree.ElementTree as ET

from mrjob.cat import decompress
from mrjob.fs.base import Filesystem
from mrjob.fs.composite import CompositeFilesystem
from mrjob.fs.hadoop import HadoopFilesystem
from mrjob.fs.local import LocalFilesystem

log = logging.getLogger(__name__)

CHUNK = 1 << 16

# -- Hadoop globs ---------------------------------------------------------------

def expand_braces(pattern):
    """``a{b,c{d,e}}f`` -> ``[abf, acdf, acef]`` (Hadoop's GlobExpander: braces may hold ``/``).
    Escaped characters (``\\{``) stay as they are."""
    depth, start, i = 0, None, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0:
                inner, alternatives, level, j0 = pattern[start + 1:i], [], 0, 0
                k = 0
                while k < len(inner):
                    ch = inner[k]
                    if ch == "\\":
                        k += 2
                        continue
                    if ch == "{":
                        level += 1
                    elif ch == "}":
                        level -= 1
                    elif ch == "," and level == 0:
                        alternatives.append(inner[j0:k])
                        j0 = k + 1
                    k += 1
                alternatives.append(inner[j0:])
                head, tail = pattern[:start], pattern[i + 1:]
                out = []
                for alt in alternatives:
                    for expanded in expand_braces(head + alt + tail):
                        if expanded not in out:
                            out.append(expanded)
                return out
        i += 1
    return [pattern]


def glob_regex(component):
    """A compiled regex for one path component of a Hadoop glob (no braces, no ``/``)."""
    out, i = [], 0
    while i < len(component):
        c = component[i]
        if c == "\\" and i + 1 < len(component):
            out.append(re.escape(component[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1
            negate = j < len(component) and component[j] in "^!"
            if negate:
                j += 1
            k = j
            if k < len(component) and component[k] == "]":
                k += 1
            while k < len(component) and component[k] != "]":
                k += 1
            if k >= len(component):  # no closing bracket: a literal [
                out.append(re.escape(c))
            else:
                body = component[j:k].replace("\\", "\\\\")
                out.append("[%s%s]" % ("^" if negate else "", body))
                i = k
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("(?s)^%s$" % "".join(out))


def is_pattern(component):
    """Does one path component (braces expanded) hold an unescaped ``*``, ``?`` or ``[``?"""
    return re.search(r"(?<!\\)(?:\\\\)*[*?\[]", component) is not None


def unescape(component):
    return re.sub(r"\\(.)", r"\1", component)


def _sort_key(name):
    return name.encode("utf-8", "surrogateescape")  # HDFS lists in byte order


# -- the part shared by both filesystems -----------------------------------------


class _GlobFilesystem(Filesystem):
    """ls/exists/du/rm over globs, for a subclass that can stat, list a folder and delete one path.

    Subclasses implement ``_split(uri) -> (prefix, path)`` (``path`` absolute,
    POSIX), ``_stat(path) -> ('f', size) | ('d', 0) | None``,
    ``_children(path) -> [(name, kind, size)]`` and ``_delete(path)``.
    """

    def _split(self, uri):
        raise NotImplementedError

    def _stat(self, path):
        raise NotImplementedError

    def _children(self, path):
        raise NotImplementedError

    def _delete(self, path):
        raise NotImplementedError

    def _glob(self, path_glob):
        """Matches of a glob as ``[(path, kind, size)]``, sorted, like Hadoop's ``globStatus``:
        one listing per folder a pattern component is matched in, one stat per run of plain
        components (a path without a pattern costs one stat)."""
        found = {}
        for pattern in expand_braces(path_glob):
            if not pattern.startswith("/"):
                raise ValueError("not an absolute path: %r" % pattern)
            parts = [p for p in pattern.split("/") if p]
            level, i = [("/", "d", 0)], 0
            while i < len(parts) and level:
                nxt = []
                if is_pattern(parts[i]):
                    regex = glob_regex(parts[i])
                    for path, kind, _ in level:
                        if kind == "d":
                            nxt += [(posixpath.join(path, name), ckind, size)
                                    for name, ckind, size in self._children(path) if regex.match(name)]
                    i += 1
                else:
                    j = i
                    while j < len(parts) and not is_pattern(parts[j]):
                        j += 1
                    rel = "/".join(unescape(p) for p in parts[i:j])
                    for path, kind, _ in level:
                        if kind == "d":
                            child = posixpath.join(path, rel)
                            st = self._stat(child)
                            if st is not None:
                                nxt.append((child, st[0], st[1]))
                    i = j
                level = nxt
            for entry in level:
                found[entry[0]] = entry
        return [found[k] for k in sorted(found, key=_sort_key)]

    def _walk_files(self, path, kind, size):
        if kind != "d":
            yield path, size
            return
        for name, ckind, csize in sorted(self._children(path), key=lambda e: _sort_key(e[0])):
            yield from self._walk_files(posixpath.join(path, name), ckind, csize)

    def ls(self, path_glob):
        prefix, path = self._split(path_glob)
        # eager (a list, not a generator): a failure surfaces inside CompositeFilesystem,
        # which can then fall back to the next filesystem
        return [prefix + p for entry in self._glob(path) for p, _ in self._walk_files(*entry)]

    def exists(self, path_glob):
        _, path = self._split(path_glob)
        return bool(self._glob(path))

    def du(self, path_glob):
        _, path = self._split(path_glob)
        return sum(size for entry in self._glob(path) for _, size in self._walk_files(*entry))

    def rm(self, path_glob):
        _, path = self._split(path_glob)
        for p, _, _ in self._glob(path):
            self._delete(p)

    def cat(self, path_glob):
        files = self.ls(path_glob)
        first = self.open_file(files[0]) if files else None  # opened now, so a failure shows here
        return self._cat_files(files, first)

    def _cat_files(self, files, first):
        for i, uri in enumerate(files):
            if i:
                yield b""
            yield from (first if i == 0 else self.open_file(uri))

    def _cat_file(self, path):   # mrjob's Filesystem hook: one file's bytes, no glob
        return self.open_file(path)


# -- file:// ---------------------------------------------------------------------


def _crc_name(path):
    d, name = os.path.split(path)
    return os.path.join(d, "." + name + ".crc")


def _is_crc(name):
    return name.startswith(".") and name.endswith(".crc")


class _PrivatePuts:
    """``put`` writes files under one of ``private_under`` (URI prefixes) readable by their owner
    only (mode 0600), others as ``hadoop fs -put`` does (the umask's mode).

    Why: Hadoop's distributed cache decides whether a shipped file is PUBLIC by checking that it
    is world-readable and that every folder above it is world-executable; on a local file system
    without Hadoop's native library each of those checks forks ``ls -ld``: 64 forks for a training
    round's 5 files, 0.5-2 s of its ``hadoop jar`` here.  A file only its owner can read stops the
    check at the file: a PRIVATE resource (localized per user), which is what a job's temp files
    are anyway.
    """

    private_under = ()

    def _private(self, uri):
        return any(uri.startswith(prefix) for prefix in self.private_under)


class LocalURIFilesystem(_PrivatePuts, _GlobFilesystem):
    """``file://`` URIs with Python's own file operations (see the module docstring).

    Paths without a scheme are left to mrjob's :class:`~mrjob.fs.local.LocalFilesystem`.
    ``private_under``: see :class:`_PrivatePuts`.
    """

    def __init__(self, private_under=()):
        super().__init__()
        self.private_under = tuple(private_under)

    def can_handle_path(self, path):
        return path.startswith("file://")

    def _split(self, uri):
        if not uri.startswith("file://"):
            raise ValueError("not a file:// URI: %r" % uri)
        rest = uri[len("file://"):]
        if not rest.startswith("/"):  # file://host/path: only the local host
            host, _, rest = rest.partition("/")
            if host not in ("", "localhost"):
                raise ValueError("not a local file URI: %r" % uri)
            rest = "/" + rest
        return "file://", rest

    def _stat(self, path):
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if os.path.isdir(path):
            return ("d", 0)
        return ("f", st.st_size)

    def _children(self, path):
        out = []
        try:
            with os.scandir(path) as it:
                for e in it:
                    if _is_crc(e.name):
                        continue
                    try:
                        if e.is_dir():
                            out.append((e.name, "d", 0))
                        else:
                            out.append((e.name, "f", e.stat().st_size))
                    except FileNotFoundError:  # removed meanwhile, or a dangling link
                        continue
        except (FileNotFoundError, NotADirectoryError):
            pass
        return out

    def _delete(self, path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
        try:
            os.remove(_crc_name(path))
        except FileNotFoundError:
            pass

    def open_file(self, path):
        _, local = self._split(path)
        f = open(local, "rb")  # opened now: FileNotFoundError / IsADirectoryError right here
        return self._read(f, path)

    @staticmethod
    def _read(f, path):
        with f:
            yield from decompress(_BigReads(f), path)

    def mkdir(self, path):
        _, local = self._split(path)
        try:
            os.makedirs(local, exist_ok=True)
        except FileExistsError:  # a file is in the way
            raise NotADirectoryError(errno.ENOTDIR, "Is not a directory", path) from None

    def _check_parent(self, local, uri):
        parent = os.path.dirname(local.rstrip("/")) or "/"
        if not os.path.isdir(parent):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", uri)

    def put(self, src, path):
        if path.endswith("/"):
            raise ValueError("put() destination may not be a directory")
        _, local = self._split(path)
        self._check_parent(local, path)
        if os.path.lexists(local):
            raise FileExistsError(errno.EEXIST, "File exists", path)
        # Hadoop's local file system keeps a checksum beside each file it wrote; one left
        # from an older file of this name would fail the new file's reads
        try:
            os.remove(_crc_name(local))
        except FileNotFoundError:
            pass
        tmp = os.path.join(os.path.dirname(local), ".%s.%d.tmp" % (os.path.basename(local), os.getpid()))
        try:
            shutil.copyfile(src, tmp)
            if self._private(path):
                os.chmod(tmp, 0o600)
            os.replace(tmp, local)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise

    def touchz(self, path):
        _, local = self._split(path)
        self._check_parent(local, path)
        if os.path.isdir(local):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        if os.path.exists(local) and os.path.getsize(local) != 0:
            raise OSError(errno.EEXIST, "Not a zero-length file", path)
        try:
            os.remove(_crc_name(local))
        except FileNotFoundError:
            pass
        with open(local, "wb"):
            pass


class _BigReads:
    """A file-like whose ``read(n)`` reads at least 64 KiB (mrjob's gunzip asks for 1 KiB)."""

    def __init__(self, f):
        self._f = f

    def read(self, n=-1):
        return self._f.read(-1 if n is None or n < 0 else max(n, CHUNK))


# -- WebHDFS ---------------------------------------------------------------------


class WebHDFSUnavailable(IOError):
    """WebHDFS cannot serve this driver (off, secured, unreachable); use ``hadoop fs``."""


class WebHDFSError(IOError):
    """A WebHDFS RemoteException that is not a missing path."""


_EXCEPTIONS = {
    "FileNotFoundException": FileNotFoundError,
    "FileAlreadyExistsException": FileExistsError,
    "ParentNotDirectoryException": NotADirectoryError,
    "AccessControlException": PermissionError,
}


def _remote_error(status, body, what):
    try:
        remote = json.loads(body.decode("utf-8"))["RemoteException"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    cls = _EXCEPTIONS.get(remote.get("exception"), WebHDFSError)
    message = "%s: %s (%s)" % (what, remote.get("message", ""), remote.get("exception"))
    if cls is WebHDFSError:
        return WebHDFSError(message)
    return cls(getattr(errno, {FileNotFoundError: "ENOENT", FileExistsError: "EEXIST",
                               NotADirectoryError: "ENOTDIR", PermissionError: "EACCES"}[cls]), message)


class _Connections:
    """Keep-alive HTTP connections by (host, port); a stale one is reopened once."""

    def __init__(self, timeout):
        self.timeout = timeout
        self._conns = {}
        self._lock = threading.Lock()

    def request(self, method, host, port, target, body=None, headers=None):
        """(status, headers, body bytes); the connection stays open for the next request."""
        resp = self.open(method, host, port, target, body, headers)
        try:
            return resp.status, resp.getheaders(), resp.read()
        finally:
            resp.close()

    def open(self, method, host, port, target, body=None, headers=None):
        """The response (not read yet): read it to the end, or close it, before the next request."""
        key = (host, port)
        for attempt in (1, 2):
            with self._lock:
                conn = self._conns.pop(key, None)
            fresh = conn is None
            if fresh:
                conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            try:
                if hasattr(body, "seek"):
                    body.seek(0)
                conn.request(method, target, body=body, headers=headers or {})
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.BadStatusLine) as e:
                conn.close()
                if fresh or attempt == 2:
                    raise WebHDFSUnavailable("WebHDFS at %s:%d: %s" % (host, port, e)) from None
                continue  # a keep-alive connection the server had closed: once more, on a new one
            except OSError as e:  # refused, unreachable, timed out, unknown host
                conn.close()
                raise WebHDFSUnavailable("WebHDFS at %s:%d: %s" % (host, port, e)) from None
            return _Response(resp, conn, self, key)
        raise AssertionError("unreachable")

    def _keep(self, key, conn):
        with self._lock:
            old = self._conns.get(key)
            if old is not None and old is not conn:
                conn.close()
            else:
                self._conns[key] = conn

    def close(self):
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()


class _Response:
    """An HTTP response that gives its connection back when read to the end."""

    def __init__(self, resp, conn, pool, key):
        self._resp, self._conn, self._pool, self._key = resp, conn, pool, key
        self.status = resp.status

    def getheaders(self):
        return self._resp.getheaders()

    def getheader(self, name, default=None):
        return self._resp.getheader(name, default)

    def read(self, n=-1):
        data = self._resp.read() if n is None or n < 0 else self._resp.read(max(n, CHUNK))
        if self._resp.isclosed() and self._conn is not None:
            self._give_back()
        return data

    def _give_back(self):
        conn, self._conn = self._conn, None
        if self._resp.will_close:
            conn.close()
        else:
            self._pool._keep(self._key, conn)

    def close(self):
        if self._conn is None:
            return
        if self._resp.isclosed():
            self._give_back()
        else:  # not read to the end: the connection cannot be reused
            self._resp.close()
            self._conn.close()
            self._conn = None


def _xml_properties(path):
    """{name: value} of a Hadoop configuration file (no variable expansion), {} if missing."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    props = {}
    for prop in root.iter("property"):
        name, value = prop.findtext("name"), prop.findtext("value")
        if name:
            props[name.strip()] = (value or "").strip()
    return props


_NAMENODE_CACHE: dict[tuple[str, ...], tuple[str | None, str | None]] = {}  # command -> (default_fs, http)
_NAMENODE_LOCK = threading.Lock()


def _run_text(args, timeout=120):
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def hadoop_conf_dir(hadoop_bin):
    """The configuration folder of ``hadoop_bin``: the one ``hadoop envvars`` prints (a shell
    function of Hadoop 3's ``hadoop`` command and of ``hadoop/bin/hadoop``: no JVM), else
    ``$HADOOP_CONF_DIR``, else None."""
    if hadoop_bin:  # what the command itself will use (a wrapper may set its own)
        out = _run_text(list(hadoop_bin) + ["envvars"], timeout=30) or ""
        m = re.search(r"^HADOOP_CONF_DIR='?([^'\n]*)'?$", out, re.M)
        if m and m.group(1):
            return m.group(1)
    return os.environ.get("HADOOP_CONF_DIR") or None


def namenode_config(hadoop_bin=None):
    """``(default_fs, http_address)`` of the cluster ``hadoop_bin`` talks to, e.g.
    ``('hdfs://nn:8020', 'nn:9870')``; either may be None.  Cached per process and command.

    Read from ``core-site.xml``/``hdfs-site.xml`` of :func:`hadoop_conf_dir` when they say it
    plainly; otherwise asked from Hadoop (``GetConf -confKey``: one JVM per key, once).
    """
    key = tuple(hadoop_bin or ())
    with _NAMENODE_LOCK:
        if key in _NAMENODE_CACHE:
            return _NAMENODE_CACHE[key]
    default_fs = http = None
    conf_dir = hadoop_conf_dir(hadoop_bin)
    props = {}
    if conf_dir:
        props.update(_xml_properties(os.path.join(conf_dir, "core-site.xml")))
        props.update(_xml_properties(os.path.join(conf_dir, "hdfs-site.xml")))
    plain = not any("${" in props.get(k, "") for k in ("fs.defaultFS", "dfs.namenode.http-address"))
    if conf_dir and plain and "fs.defaultFS" in props:
        default_fs = props["fs.defaultFS"]
        http = props.get("dfs.namenode.http-address")
        if props.get("dfs.nameservices") or props.get("dfs.http.policy", "HTTP_ONLY") == "HTTPS_ONLY":
            http = None  # HA or HTTPS only: not handled here
        elif not http and default_fs.startswith("hdfs://"):
            http = "%s:9870" % urllib.parse.urlsplit(default_fs).hostname  # hdfs-default.xml
    elif hadoop_bin:
        getconf = list(hadoop_bin) + ["org.apache.hadoop.hdfs.tools.GetConf", "-confKey"]
        default_fs = (_run_text(getconf + ["fs.defaultFS"]) or "").strip() or None
        if default_fs and default_fs.startswith("hdfs://"):
            http = (_run_text(getconf + ["dfs.namenode.http-address"]) or "").strip() or None
    if http and http.split(":", 1)[0] in ("0.0.0.0", ""):
        host = urllib.parse.urlsplit(default_fs or "").hostname or "127.0.0.1"
        http = "%s:%s" % (host, http.rsplit(":", 1)[1])
    result = (default_fs, http)
    with _NAMENODE_LOCK:
        _NAMENODE_CACHE[key] = result
    return result


class WebHDFSFilesystem(_PrivatePuts, _GlobFilesystem):
    """``hdfs://`` URIs of one NameNode over WebHDFS (see the module docstring).

    :param url: the NameNode's HTTP address, ``http://host:port`` or ``host:port``; default
                ``$MR_TL_WEBHDFS_URL``, else the cluster configuration of ``hadoop_bin``
                (:func:`namenode_config`), looked up on first use.
    :param default_fs: the cluster's ``fs.defaultFS`` (``hdfs://host:port``): URIs naming that
                NameNode are handled, as are ``hdfs:///...``.  Default: from the configuration.
    :param user: ``user.name`` of the requests (default ``$HADOOP_USER_NAME``, else the login
                name, as the ``hadoop`` command does with simple authentication).
    :param private_under: see :class:`_PrivatePuts`.
    """

    def __init__(self, url=None, hadoop_bin=None, default_fs=None, user=None, timeout=60.0, private_under=()):
        super().__init__()
        self.private_under = tuple(private_under)
        self._url = url or os.environ.get("MR_TL_WEBHDFS_URL") or None
        self._hadoop_bin = list(hadoop_bin) if hadoop_bin else None
        self._default_fs = default_fs
        self._configured = bool(self._url and self._default_fs)
        self._user = user or os.environ.get("HADOOP_USER_NAME") or getpass.getuser()
        self._pool = _Connections(timeout)
        self._checked = False
        self._host = self._port = None

    # -- which paths, which NameNode --

    def _configure(self):
        if self._configured:
            return
        if not (self._url and self._default_fs):
            hadoop_bin = self._hadoop_bin or HadoopFilesystem().get_hadoop_bin()  # found as mrjob does
            default_fs, http = namenode_config(hadoop_bin)
            self._default_fs = self._default_fs or default_fs
            self._url = self._url or http
        self._configured = True

    def _default_netloc(self):
        self._configure()
        if not self._default_fs or not self._default_fs.startswith("hdfs://"):
            return None
        return urllib.parse.urlsplit(self._default_fs).netloc

    def can_handle_path(self, path):
        if not path.startswith("hdfs://"):
            return False
        netloc = path[len("hdfs://"):].split("/", 1)[0]
        if not netloc:
            return True
        try:
            return netloc == self._default_netloc()
        except OSError:
            return False

    def _split(self, uri):
        if not uri.startswith("hdfs://"):
            raise ValueError("not an hdfs:// URI: %r" % uri)
        rest = uri[len("hdfs://"):]
        netloc, slash, path = rest.partition("/")
        return "hdfs://" + netloc, "/" + path

    # -- HTTP --

    def _endpoint(self):
        self._configure()
        if not self._url:
            raise WebHDFSUnavailable("no NameNode HTTP address (dfs.namenode.http-address) for WebHDFS")
        if self._host is None:
            url = self._url if "://" in self._url else "http://" + self._url
            parts = urllib.parse.urlsplit(url)
            if parts.scheme != "http":
                raise WebHDFSUnavailable("only http:// WebHDFS is supported, not %s" % self._url)
            self._host, self._port = parts.hostname, parts.port or 9870
        if not self._checked:
            self._checked = True
            status, _, body = self._pool.request("GET", self._host, self._port, self._target("/", "GETFILESTATUS"))
            try:
                ok = status == 200 and json.loads(body.decode("utf-8"))["FileStatus"]["type"] == "DIRECTORY"
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                ok = False
            if not ok:
                self._checked = False
                raise WebHDFSUnavailable("WebHDFS at %s answers %d to GETFILESTATUS / (switched off, or "
                                         "secured?)" % (self._url, status))
        return self._host, self._port

    def _target(self, path, op, **params):
        query = [("op", op), ("user.name", self._user)] + [(k, v) for k, v in params.items()]
        return "/webhdfs/v1" + urllib.parse.quote(path, safe="/") + "?" + urllib.parse.urlencode(query)

    def _call(self, method, path, op, what=None, ok=(200,), **params):
        host, port = self._endpoint()
        status, headers, body = self._pool.request(method, host, port, self._target(path, op, **params))
        if status in ok:
            return status, headers, body
        raise self._error(status, body, what or "%s %s" % (op, path))

    def _error(self, status, body, what):
        err = _remote_error(status, body, what)
        if err is not None:
            return err
        if status in (401, 403):
            return WebHDFSUnavailable("%s: HTTP %d (secured cluster?)" % (what, status))
        return WebHDFSError("%s: HTTP %d %s" % (what, status, body[:200]))

    def _json(self, method, path, op, **params):
        _, _, body = self._call(method, path, op, **params)
        return json.loads(body.decode("utf-8"))

    def _redirect(self, headers, what):
        location = dict((k.lower(), v) for k, v in headers).get("location")
        if not location:
            raise WebHDFSError("%s: no redirect to a DataNode" % what)
        parts = urllib.parse.urlsplit(location)
        target = parts.path + ("?" + parts.query if parts.query else "")
        return parts.hostname, parts.port or 80, target

    # -- what _GlobFilesystem needs --

    @staticmethod
    def _kind(status):
        return ("d", 0) if status["type"] == "DIRECTORY" else ("f", int(status.get("length", 0)))

    def _stat(self, path):
        try:
            return self._kind(self._json("GET", path, "GETFILESTATUS")["FileStatus"])
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _children(self, path):
        try:
            statuses = self._json("GET", path, "LISTSTATUS")["FileStatuses"]["FileStatus"]
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [(s["pathSuffix"],) + self._kind(s) for s in statuses if s.get("pathSuffix")]

    def _delete(self, path):
        self._call("DELETE", path, "DELETE", recursive="true")

    def du(self, path_glob):
        _, path = self._split(path_glob)
        total = 0
        for p, kind, size in self._glob(path):
            if kind == "d":
                total += int(self._json("GET", p, "GETCONTENTSUMMARY")["ContentSummary"]["length"])
            else:
                total += size
        return total

    # -- the rest of mrjob's Filesystem --

    def mkdir(self, path):
        _, p = self._split(path)
        try:
            self._json("PUT", p, "MKDIRS")
        except (FileExistsError, NotADirectoryError) as e:
            raise NotADirectoryError(errno.ENOTDIR, "Is not a directory: %s" % e, path) from None

    def _create(self, path, uri, data_file, length):
        """CREATE without overwriting and without creating parents, as ``hadoop fs -put`` does."""
        extra = {"permission": "600"} if self._private(uri) else {}
        status, headers, body = self._call("PUT", path, "CREATE", what="create %s" % uri, ok=(307,),
                                           overwrite="false", createparent="false", **extra)
        host, port, target = self._redirect(headers, "create %s" % uri)
        status, _, body = self._pool.request("PUT", host, port, target, body=data_file,
                                             headers={"Content-Type": "application/octet-stream",
                                                      "Content-Length": str(length)})
        if status != 201:
            raise self._error(status, body, "create %s" % uri)

    def put(self, src, path):
        if path.endswith("/"):
            raise ValueError("put() destination may not be a directory")
        _, p = self._split(path)
        with open(src, "rb") as f:
            self._create(p, path, f, os.fstat(f.fileno()).st_size)

    def touchz(self, path):
        _, p = self._split(path)
        st = self._stat(p)
        if st is not None:
            if st[0] == "d":
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            if st[1] != 0:
                raise OSError(errno.EEXIST, "Not a zero-length file", path)
            return
        self._create(p, path, b"", 0)

    def open_file(self, path):
        _, p = self._split(path)
        host, port = self._endpoint()
        status, headers, body = self._pool.request("GET", host, port, self._target(p, "OPEN"))
        if status != 307:
            raise self._error(status, body, "open %s" % path)
        dn_host, dn_port, target = self._redirect(headers, "open %s" % path)
        resp = self._pool.open("GET", dn_host, dn_port, target)  # now: an unreachable DataNode shows here
        if resp.status != 200:
            body = resp.read()
            resp.close()
            raise self._error(resp.status, body, "open %s" % path)
        return self._stream(resp, path)

    @staticmethod
    def _stream(resp, path):
        try:
            yield from decompress(resp, path) if path.endswith((".gz", ".bz2")) else iter(
                lambda: resp.read(CHUNK), b"")
        finally:
            resp.close()

    def close(self):
        self._pool.close()


# -- mrjob's hadoop fs, with `hadoop version` asked once per process ----------------------------

_VERSIONS: dict[tuple[str, ...], str] = {}  # hadoop command -> what `hadoop version` says (e.g. "3.3.6")


class CachedVersionHadoopFilesystem(HadoopFilesystem):
    """mrjob's ``hadoop fs`` filesystem; ``get_hadoop_version()`` runs ``hadoop version`` once per
    process and hadoop command (mrjob asks it once per runner, i.e. once per round)."""

    def get_hadoop_version(self):
        key = tuple(self.get_hadoop_bin())
        if key not in _VERSIONS:
            _VERSIONS[key] = super().get_hadoop_version()
        return _VERSIONS[key]


def filesystem(hadoop_bin=None, webhdfs_url=None, default_fs=None, private_under=()):
    """A :class:`~mrjob.fs.composite.CompositeFilesystem`: ``file://`` in Python, ``hdfs://`` over
    WebHDFS (falling back to ``hadoop fs`` for good if WebHDFS is unavailable), anything else
    through ``hadoop fs``, plain paths locally.  A drop-in for ``mr_tl.storage.filesystem``.

    ``hadoop_bin``: the hadoop command, a string (split on spaces) or a list, or None to find it
    as mrjob does.  ``private_under``: URI prefixes under which ``put`` writes owner-only files
    (see :class:`_PrivatePuts`; for a runner's temp folders, not for outputs).
    """
    if isinstance(hadoop_bin, str):
        hadoop_bin = hadoop_bin.split()
    hadoop_bin = list(hadoop_bin) if hadoop_bin else None
    fs = CompositeFilesystem()
    fs.add_fs("fast_local", LocalURIFilesystem(private_under))
    fs.add_fs("webhdfs", WebHDFSFilesystem(webhdfs_url, hadoop_bin=hadoop_bin, default_fs=default_fs,
                                           private_under=private_under),
              disable_if=lambda e: isinstance(e, WebHDFSUnavailable))
    fs.add_fs("hadoop", CachedVersionHadoopFilesystem(hadoop_bin))
    fs.add_fs("local", LocalFilesystem())
    return fs
