"""mr_tl.fastfs without Hadoop: the file:// filesystem against a local folder, the WebHDFS client
against a small fake WebHDFS server (protocol, errors, falling back to ``hadoop fs``), glob
patterns, bytecode zips, the runner pieces and the mrjob internals they rely on.  The answers are
compared with real Hadoop's in tests/engines/test_fastfs_cluster.py."""

import gzip
import http.server
import importlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import urllib.parse
import zipfile

import pytest

from mr_tl import fastfs
from mr_tl.jobs import compat, compat_runners

# -- globs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern, expected", [
    ("/a/b", ["/a/b"]),
    ("/a/{b,c}", ["/a/b", "/a/c"]),
    ("/a/{b,c{d,e}}/f", ["/a/b/f", "/a/cd/f", "/a/ce/f"]),
    ("/a/{x/y,z}", ["/a/x/y", "/a/z"]),            # braces may hold '/' (Hadoop's GlobExpander)
    ("/a/{b,b}", ["/a/b"]),
    ("/a/\\{b,c}", ["/a/\\{b,c}"]),                # escaped: no alternatives
])
def test_expand_braces(pattern, expected):
    assert fastfs.expand_braces(pattern) == expected


@pytest.mark.parametrize("component, matches, misses", [
    ("*", ["a", ".hidden", ""], []),
    ("part-*", ["part-00000", "part-"], ["xpart-0"]),
    ("?.txt", ["a.txt"], ["ab.txt", ".txt"]),
    ("[ab]c", ["ac", "bc"], ["cc"]),
    ("[a-c]", ["b"], ["d"]),
    ("[^a]", ["b"], ["a"]),
    ("[!a]", ["b"], ["a"]),
    ("a\\*", ["a*"], ["ab"]),
    ("a.b", ["a.b"], ["axb"]),                     # no regex leaks
    ("(x)+", ["(x)+"], ["x", "xx"]),
])
def test_glob_regex(component, matches, misses):
    regex = fastfs.glob_regex(component)
    assert all(regex.match(m) for m in matches)
    assert not any(regex.match(m) for m in misses)


def test_is_pattern():
    assert fastfs.is_pattern("a*") and fastfs.is_pattern("[ab]") and fastfs.is_pattern("a?")
    assert not fastfs.is_pattern("abc") and not fastfs.is_pattern("a\\*") and not fastfs.is_pattern("\\[x")
    assert fastfs.is_pattern("a\\\\*")  # an escaped backslash, then a real *


# -- file:// ------------------------------------------------------------------------------------

NAMES = ("a.txt", "empty", ".dot", "e/ü n.txt", "e/f/deep.txt", ".hid/h")


@pytest.fixture
def tree(tmp_path):
    """A folder with files in sub-folders, an empty file, hidden files, a non-ASCII name with a space,
    an empty folder, and a Hadoop checksum file (hidden from listings, as Hadoop hides it)."""
    root = tmp_path / "root"
    for name in NAMES:
        path = root / "d" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if name == "empty" else name.encode("utf-8") + b"\n")
    (root / "d" / ".a.txt.crc").write_bytes(b"crc")
    (root / "emptydir").mkdir()
    (root / "top.gz").write_bytes(gzip.compress(b"zipped\n"))
    return root


def uri(path):
    return "file://" + str(path)


@pytest.fixture
def lfs():
    return fastfs.LocalURIFilesystem()


def test_local_ls_lists_files_recursively_as_uris(lfs, tree):
    expected = sorted(uri(tree / "d" / n) for n in NAMES)
    assert sorted(lfs.ls(uri(tree / "d"))) == expected
    assert sorted(lfs.ls(uri(tree))) == sorted(expected + [uri(tree / "top.gz")])
    assert lfs.ls(uri(tree / "d" / "a.txt")) == [uri(tree / "d" / "a.txt")]
    assert lfs.ls(uri(tree / "emptydir")) == []
    assert lfs.ls(uri(tree / "nope")) == []
    assert lfs.ls(uri(tree / "d" / "a.txt" / "under-a-file")) == []


def test_local_ls_globs(lfs, tree):
    d = tree / "d"
    assert sorted(lfs.ls(uri(d) + "/*.txt")) == [uri(d / "a.txt")]
    # `*` matches hidden names too, as in Hadoop; folders matched are listed recursively
    assert sorted(lfs.ls(uri(d) + "/.*")) == [uri(d / ".dot"), uri(d / ".hid/h")]
    assert sorted(lfs.ls(uri(d) + "/{a.txt,empty}")) == [uri(d / "a.txt"), uri(d / "empty")]
    assert sorted(lfs.ls(uri(d) + "/e/*")) == [uri(d / "e/f/deep.txt"), uri(d / "e/ü n.txt")]
    assert sorted(lfs.ls(uri(tree) + "/*/e/f")) == [uri(d / "e/f/deep.txt")]
    assert sorted(lfs.ls(uri(d) + "/[ab].txt")) == [uri(d / "a.txt")]
    assert lfs.ls(uri(d) + "/nothing*") == []


def test_local_exists_and_du(lfs, tree):
    d = tree / "d"
    assert lfs.exists(uri(d)) and lfs.exists(uri(tree / "emptydir")) and lfs.exists(uri(d / "empty"))
    assert lfs.exists(uri(d) + "/*.txt") and not lfs.exists(uri(d) + "/*.csv")
    assert not lfs.exists(uri(tree / "nope"))
    sizes = {n: len(n.encode("utf-8")) + 1 for n in NAMES}
    sizes["empty"] = 0
    assert lfs.du(uri(d)) == sum(sizes.values())  # the .crc file is not counted
    assert lfs.du(uri(d / "a.txt")) == sizes["a.txt"]
    assert lfs.du(uri(tree / "nope")) == 0


def test_local_cat(lfs, tree):
    assert b"".join(lfs._cat_file(uri(tree / "d" / "e" / "ü n.txt"))) == "e/ü n.txt\n".encode("utf-8")
    assert b"".join(lfs._cat_file(uri(tree / "top.gz"))) == b"zipped\n"  # decompressed, as mrjob does
    assert b"".join(lfs._cat_file(uri(tree / "d" / "empty"))) == b""
    chunks = list(lfs.cat(uri(tree / "d") + "/{a.txt,empty}"))
    assert chunks == [b"a.txt\n", b""]  # b"" between files
    with pytest.raises(OSError):
        lfs._cat_file(uri(tree / "nope"))  # raised when called, not when read
    with pytest.raises(OSError):
        lfs._cat_file(uri(tree / "d"))


def test_local_mkdir(lfs, tree):
    lfs.mkdir(uri(tree / "new" / "deeper"))
    assert (tree / "new" / "deeper").is_dir()
    lfs.mkdir(uri(tree / "new" / "deeper"))  # again: nothing happens
    with pytest.raises(OSError):
        lfs.mkdir(uri(tree / "d" / "a.txt"))
    with pytest.raises(OSError):
        lfs.mkdir(uri(tree / "d" / "a.txt" / "sub"))


def test_local_put(lfs, tree, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    (tree / "d" / ".new.bin.crc").write_bytes(b"stale")  # left by Hadoop for an older file of that name
    lfs.put(str(src), uri(tree / "d" / "new.bin"))
    assert (tree / "d" / "new.bin").read_bytes() == b"payload"
    assert not (tree / "d" / ".new.bin.crc").exists()
    assert not [n for n in os.listdir(tree / "d") if n.endswith(".tmp")]
    with pytest.raises(FileExistsError):
        lfs.put(str(src), uri(tree / "d" / "new.bin"))
    with pytest.raises(FileNotFoundError):  # like `hadoop fs -put`: the folder must exist
        lfs.put(str(src), uri(tree / "missing" / "x.bin"))
    with pytest.raises(ValueError):
        lfs.put(str(src), uri(tree / "d") + "/")


def test_local_put_private_under_a_prefix(tree, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    lfs = fastfs.LocalURIFilesystem(private_under=[uri(tree / "d" / "e") + "/"])
    lfs.put(str(src), uri(tree / "d" / "e" / "job-file"))
    lfs.put(str(src), uri(tree / "d" / "output-file"))
    assert stat.S_IMODE(os.stat(tree / "d" / "e" / "job-file").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tree / "d" / "output-file").st_mode) & 0o044 == 0o044 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_local_touchz(lfs, tree):
    lfs.touchz(uri(tree / "d" / "z"))
    assert (tree / "d" / "z").read_bytes() == b""
    lfs.touchz(uri(tree / "d" / "z"))  # an empty file again: fine
    with pytest.raises(OSError):
        lfs.touchz(uri(tree / "d" / "a.txt"))  # not a zero-length file
    with pytest.raises(OSError):
        lfs.touchz(uri(tree / "d"))
    with pytest.raises(FileNotFoundError):
        lfs.touchz(uri(tree / "missing" / "z"))


def test_local_rm(lfs, tree):
    lfs.rm(uri(tree / "d" / "a.txt"))
    assert not (tree / "d" / "a.txt").exists()
    assert not (tree / "d" / ".a.txt.crc").exists()  # its checksum goes with it
    lfs.rm(uri(tree / "d") + "/e*")
    assert not (tree / "d" / "e").exists()
    lfs.rm(uri(tree / "nope"))  # missing: nothing happens
    lfs.rm(uri(tree))
    assert not tree.exists()


def test_local_uri_forms(lfs, tree):
    assert lfs.can_handle_path("file:///x") and not lfs.can_handle_path("/x")
    assert not lfs.can_handle_path("hdfs:///x")
    assert lfs.ls("file://localhost" + str(tree / "d" / "a.txt")) == [uri(tree / "d" / "a.txt")]
    with pytest.raises(ValueError):
        lfs.ls("file://otherhost/x")


# -- a fake WebHDFS ---------------------------------------------------------------------------


class FakeWebHDFS:
    """NameNode + DataNode WebHDFS over a local folder, in a thread; enough of the protocol for the
    client: GETFILESTATUS, LISTSTATUS, GETCONTENTSUMMARY, MKDIRS, DELETE, CREATE and OPEN (307 to
    the DataNode port), RemoteException errors, keep-alive.  ``mode='off'`` answers 404 pages
    (WebHDFS switched off); ``mode='secure'`` 401."""

    def __init__(self, root, mode="on"):
        self.root, self.mode, self.requests = str(root), mode, []
        self.drop_connections = False  # close each connection after its reply, without saying so
        self.permissions = {}  # path -> the permission CREATE asked for
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.handle(self)

            do_PUT = do_DELETE = do_GET

        self.nn = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dn = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        for server in (self.nn, self.dn):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.url = "127.0.0.1:%d" % self.nn.server_address[1]

    def close(self):
        for server in (self.nn, self.dn):
            server.shutdown()
            server.server_close()

    def local(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    @staticmethod
    def status(path, name=""):
        st = os.stat(path)
        directory = stat.S_ISDIR(st.st_mode)
        return {"pathSuffix": name, "type": "DIRECTORY" if directory else "FILE",
                "length": 0 if directory else st.st_size}

    def reply(self, h, code, body=b"", ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
        h.send_response(code)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        if self.drop_connections:
            h.close_connection = True

    def error(self, h, code, exception, message):
        self.reply(h, code, {"RemoteException": {"exception": exception, "message": message}})

    def handle(self, h):
        url = urllib.parse.urlsplit(h.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        path = urllib.parse.unquote(url.path[len("/webhdfs/v1"):]) or "/"
        on_dn = h.server is self.dn
        length = int(h.headers.get("Content-Length") or 0)
        data = h.rfile.read(length) if length else b""
        self.requests.append((h.command, q.get("op"), path, "dn" if on_dn else "nn"))
        if self.mode == "off":
            return self.reply(h, 404, b"<html>HTTP ERROR 404</html>", "text/html")
        if self.mode == "secure":
            return self.reply(h, 401, b"<html>Authentication required</html>", "text/html")
        assert q.get("user.name")
        op, p = q.get("op"), self.local(path)
        exists = os.path.exists(p)
        if op == "GETFILESTATUS":
            if not exists:
                return self.error(h, 404, "FileNotFoundException", "File does not exist: " + path)
            return self.reply(h, 200, {"FileStatus": self.status(p)})
        if op == "LISTSTATUS":
            if not exists:
                return self.error(h, 404, "FileNotFoundException", "File " + path + " does not exist.")
            items = [self.status(p)] if not os.path.isdir(p) else [
                self.status(os.path.join(p, n), n) for n in sorted(os.listdir(p))]
            return self.reply(h, 200, {"FileStatuses": {"FileStatus": items}})
        if op == "GETCONTENTSUMMARY":
            total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs)
            return self.reply(h, 200, {"ContentSummary": {"length": total}})
        if op == "MKDIRS":
            try:
                os.makedirs(p, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                return self.error(h, 403, "ParentNotDirectoryException", path)
            return self.reply(h, 200, {"boolean": True})
        if op == "DELETE":
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif exists:
                os.remove(p)
            return self.reply(h, 200, {"boolean": exists})
        if op == "CREATE" and not on_dn and "permission" in q:
            self.permissions[path] = q["permission"]
        if op in ("CREATE", "OPEN") and not on_dn:
            location = "http://127.0.0.1:%d%s" % (self.dn.server_address[1], h.path)
            return self.reply(h, 307, b"", headers=[("Location", location)])
        if op == "CREATE":
            if exists and q.get("overwrite") != "true":
                return self.error(h, 403, "FileAlreadyExistsException", path + " already exists")
            if q.get("createparent") == "false" and not os.path.isdir(os.path.dirname(p)):
                return self.error(h, 404, "FileNotFoundException", "Parent directory doesn't exist")
            with open(p, "wb") as f:
                f.write(data)
            return self.reply(h, 201, b"")
        if op == "OPEN":
            if not exists or os.path.isdir(p):
                return self.error(h, 404, "FileNotFoundException", "Path is not a file: " + path)
            with open(p, "rb") as f:
                return self.reply(h, 200, f.read(), "application/octet-stream")
        return self.error(h, 400, "IllegalArgumentException", "op " + str(op))


@pytest.fixture
def fake_hdfs(tmp_path):
    (tmp_path / "hdfs").mkdir()
    server = FakeWebHDFS(tmp_path / "hdfs")
    yield server
    server.close()


def webhdfs(server, **kw):
    return fastfs.WebHDFSFilesystem(server.url, default_fs="hdfs://nn.example:8020", user="tester", **kw)


def test_webhdfs_round_trip(fake_hdfs, tmp_path):
    fs = webhdfs(fake_hdfs)
    src = tmp_path / "src.txt"
    src.write_bytes("hällo\n".encode("utf-8"))
    fs.mkdir("hdfs:///w/a b/c")
    fs.put(str(src), "hdfs:///w/a b/c/ü.txt")
    fs.touchz("hdfs:///w/empty")
    fs.mkdir("hdfs:///w/emptydir")
    assert sorted(fs.ls("hdfs:///w")) == ["hdfs:///w/a b/c/ü.txt", "hdfs:///w/empty"]
    assert fs.ls("hdfs://nn.example:8020/w/a*/c") == ["hdfs://nn.example:8020/w/a b/c/ü.txt"]
    assert fs.ls("hdfs:///w/{empty,nope}") == ["hdfs:///w/empty"]
    assert fs.ls("hdfs:///nope") == []
    assert fs.exists("hdfs:///w/emptydir") and not fs.exists("hdfs:///w/x*")
    assert fs.du("hdfs:///w") == len("hällo\n".encode("utf-8")) and fs.du("hdfs:///nope") == 0
    assert b"".join(fs._cat_file("hdfs:///w/a b/c/ü.txt")) == "hällo\n".encode("utf-8")
    assert list(fs.cat("hdfs:///w/{a b/c/ü.txt,empty}")) == ["hällo\n".encode("utf-8"), b""]
    with pytest.raises(FileExistsError):
        fs.put(str(src), "hdfs:///w/empty")
    with pytest.raises(FileNotFoundError):
        fs.put(str(src), "hdfs:///missing/x")
    with pytest.raises(OSError):
        fs.touchz("hdfs:///w/a b/c/ü.txt")
    with pytest.raises(OSError):
        fs.mkdir("hdfs:///w/empty/sub")
    with pytest.raises(OSError):
        b"".join(fs._cat_file("hdfs:///w/nope"))
    fs.rm("hdfs:///w/a*")
    assert fs.ls("hdfs:///w") == ["hdfs:///w/empty"]
    fs.rm("hdfs:///nothing")
    # the data went to the DataNode, and one stat is enough for a path without a pattern
    assert ("PUT", "CREATE", "/w/a b/c/ü.txt", "dn") in fake_hdfs.requests
    private = webhdfs(fake_hdfs, private_under=["hdfs:///tmp/"])
    private.mkdir("hdfs:///tmp/job")
    private.put(str(src), "hdfs:///tmp/job/f")
    private.put(str(src), "hdfs:///w/out")
    assert fake_hdfs.permissions == {"/tmp/job/f": "600"}
    fake_hdfs.requests.clear()
    assert fs.exists("hdfs:///w/empty")
    assert fake_hdfs.requests == [("GET", "GETFILESTATUS", "/w/empty", "nn")]


def test_webhdfs_gzip_is_decompressed(fake_hdfs, tmp_path):
    fs = webhdfs(fake_hdfs)
    src = tmp_path / "x.gz"
    src.write_bytes(gzip.compress(b"line\n" * 1000))
    fs.mkdir("hdfs:///g")
    fs.put(str(src), "hdfs:///g/x.gz")
    assert b"".join(fs._cat_file("hdfs:///g/x.gz")) == b"line\n" * 1000


def test_webhdfs_handles_only_its_namenode(fake_hdfs):
    fs = webhdfs(fake_hdfs)
    assert fs.can_handle_path("hdfs:///x") and fs.can_handle_path("hdfs://nn.example:8020/x")
    assert not fs.can_handle_path("hdfs://other:8020/x") and not fs.can_handle_path("file:///x")
    assert not fs.can_handle_path("s3://bucket/x")


def test_webhdfs_reconnects_when_the_server_dropped_the_connection(fake_hdfs):
    fs = webhdfs(fake_hdfs)
    assert fs.ls("hdfs:///") == []
    fake_hdfs.drop_connections = True  # what a server's keep-alive timeout does
    fs.mkdir("hdfs:///a")
    fs.mkdir("hdfs:///a/b")
    assert fs.exists("hdfs:///a/b") and fs.ls("hdfs:///a") == []


def fake_hadoop(tmp_path, listing=""):
    """A `hadoop` command that logs its arguments, answers `version`, `fs -ls -R` with ``listing``,
    and `envvars` with a HADOOP_CONF_DIR."""
    log = tmp_path / "hadoop-calls.txt"
    script = tmp_path / "bin" / "hadoop"
    script.parent.mkdir(exist_ok=True)
    script.write_text("""#!/bin/sh
echo "$*" >> %s
case "$1" in
  version) echo "Hadoop 3.5.0" ;;
  envvars) echo "HADOOP_CONF_DIR='%s'" ;;
  fs) printf '%%s' '%s' ;;
esac
""" % (log, tmp_path / "conf", listing))
    script.chmod(0o755)
    return str(script), log


def calls(log):
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("mode", ["off", "secure", "down"])
def test_composite_falls_back_to_hadoop_fs_for_good(tmp_path, mode):
    server = FakeWebHDFS(tmp_path, mode="off" if mode == "down" else mode)
    url = server.url
    if mode == "down":
        server.close()
    try:
        listing = "-rw-r--r--   1 u g          3 2026-01-01 10:00 hdfs:///x/y\n"
        hadoop_bin, log = fake_hadoop(tmp_path, listing)
        fs = fastfs.filesystem(hadoop_bin, webhdfs_url=url, default_fs="hdfs://nn:8020")
        assert list(fs.ls("hdfs:///x")) == ["hdfs:///x/y"]  # answered by `hadoop fs -ls -R`
        assert "webhdfs" in fs._disabled
        assert [c for c in calls(log) if c.startswith("fs")] == ["fs -ls -R hdfs:///x"]
        list(fs.ls("hdfs:///x"))
        if mode != "down":
            assert len([r for r in server.requests if r[-1] == "nn"]) == 1  # asked once only
    finally:
        if mode != "down":
            server.close()


def test_composite_routes_by_scheme(tmp_path, fake_hdfs, tree):
    hadoop_bin, log = fake_hadoop(tmp_path)
    fs = fastfs.filesystem(hadoop_bin, webhdfs_url=fake_hdfs.url, default_fs="hdfs://nn:8020")
    assert sorted(fs.ls(uri(tree / "d"))) == sorted(uri(tree / "d" / n) for n in NAMES)
    assert sorted(fs.ls(str(tree / "d" / "e"))) == sorted(str(tree / "d" / n) for n in NAMES if n.startswith("e/"))
    fs.mkdir("hdfs:///z")
    assert fs.exists("hdfs:///z")
    assert calls(log) == []  # not one hadoop command
    assert all(compat.jvm_free(fs, p) for p in ("hdfs:///z", "file:///z", "/z", "relative"))
    assert not compat.jvm_free(fs, "hdfs://elsewhere:8020/z") and not compat.jvm_free(fs, "s3://b/z")
    fs._disabled.add("webhdfs")  # what the composite does when WebHDFS turns out unavailable
    assert not compat.jvm_free(fs, "hdfs:///z")
    assert isinstance(fs.hadoop, fastfs.CachedVersionHadoopFilesystem)  # still there for `hadoop jar` etc.


# -- configuration ------------------------------------------------------------------------------


def write_site(path, props):
    path.write_text("<?xml version='1.0'?>\n<configuration>\n%s</configuration>\n" % "".join(
        "  <property><name>%s</name><value>%s</value></property>\n" % kv for kv in props.items()))


@pytest.mark.parametrize("core, hdfs, expected", [
    ({"fs.defaultFS": "hdfs://nn1:8020"}, {"dfs.namenode.http-address": "nn1:9871"}, ("hdfs://nn1:8020", "nn1:9871")),
    ({"fs.defaultFS": "hdfs://nn1:8020"}, {}, ("hdfs://nn1:8020", "nn1:9870")),   # hdfs-default.xml
    ({"fs.defaultFS": "hdfs://nn1:8020"}, {"dfs.namenode.http-address": "0.0.0.0:9870"},
     ("hdfs://nn1:8020", "nn1:9870")),
    ({"fs.defaultFS": "hdfs://ha"}, {"dfs.nameservices": "ha"}, ("hdfs://ha", None)),  # HA: not handled
    ({"fs.defaultFS": "hdfs://nn1:8020"}, {"dfs.http.policy": "HTTPS_ONLY"}, ("hdfs://nn1:8020", None)),
    ({"fs.defaultFS": "file:///"}, {}, ("file:///", None)),
])
def test_namenode_config_from_the_conf_dir(tmp_path, monkeypatch, core, hdfs, expected):
    hadoop_bin, log = fake_hadoop(tmp_path)
    (tmp_path / "conf").mkdir()
    write_site(tmp_path / "conf" / "core-site.xml", core)
    write_site(tmp_path / "conf" / "hdfs-site.xml", hdfs)
    monkeypatch.setattr(fastfs, "_NAMENODE_CACHE", {})
    assert fastfs.namenode_config([hadoop_bin]) == expected
    assert fastfs.namenode_config([hadoop_bin]) == expected
    assert calls(log) == ["envvars"]  # a shell function, no JVM; once per process


def test_webhdfs_finds_the_namenode_in_the_configuration(tmp_path, monkeypatch, fake_hdfs):
    hadoop_bin, _ = fake_hadoop(tmp_path)
    (tmp_path / "conf").mkdir()
    write_site(tmp_path / "conf" / "core-site.xml", {"fs.defaultFS": "hdfs://127.0.0.1:8020"})
    write_site(tmp_path / "conf" / "hdfs-site.xml", {"dfs.namenode.http-address": fake_hdfs.url})
    monkeypatch.setattr(fastfs, "_NAMENODE_CACHE", {})
    monkeypatch.delenv("MR_TL_WEBHDFS_URL", raising=False)
    fs = fastfs.WebHDFSFilesystem(hadoop_bin=[hadoop_bin])
    assert fs.can_handle_path("hdfs://127.0.0.1:8020/x") and not fs.can_handle_path("hdfs://127.0.0.1:9000/x")
    fs.mkdir("hdfs:///found")
    assert os.path.isdir(os.path.join(fake_hdfs.root, "found"))


# -- the runner pieces -------------------------------------------------------------------------


def test_hadoop_version_is_asked_once_per_process(tmp_path, monkeypatch):
    hadoop_bin, log = fake_hadoop(tmp_path)
    monkeypatch.setattr(fastfs, "_VERSIONS", {})
    for _ in range(3):
        assert fastfs.CachedVersionHadoopFilesystem([hadoop_bin]).get_hadoop_version() == "3.5.0"
    assert calls(log) == ["version"]


def test_fast_runner_uses_the_fast_filesystem_and_asks_the_version_once(tmp_path, monkeypatch):
    hadoop_bin, log = fake_hadoop(tmp_path)
    monkeypatch.setattr(fastfs, "_VERSIONS", {})
    monkeypatch.setattr(fastfs, "_NAMENODE_CACHE", {})
    runners = [compat_runners.FastHadoopJobRunner(hadoop_bin=[hadoop_bin], conf_paths=[]) for _ in range(2)]
    for runner in runners:
        assert runner.fs._fs_names[:2] == ["fast_local", "webhdfs"]
        assert runner.get_hadoop_version() == "3.5.0"
        runner.cleanup()
    assert calls(log).count("version") == 1
    # its temp folder is on hdfs:// and no WebHDFS is to be found (no conf dir, GetConf says nothing
    # here): looked for once per process, then `hadoop fs -rm`
    assert [c.split()[0] for c in calls(log) if c != "version"] == [
        "envvars", "org.apache.hadoop.hdfs.tools.GetConf", "fs", "fs"]


def test_fast_runner_ships_compiled_zips_uploaded_once_per_process(tmp_path, monkeypatch):
    hadoop_bin, log = fake_hadoop(tmp_path)
    monkeypatch.setattr(compat_runners, "_SHARED", {})
    src = tmp_path / "mypkg-0001.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("mypkg/__init__.py", "X = 1\n")
    tmp_root = tmp_path / "hadoop-tmp"
    tmp_root.mkdir()
    uris = []
    for _ in range(2):
        runner = compat_runners.FastHadoopJobRunner(hadoop_bin=[hadoop_bin], conf_paths=[], py_files=[str(src)],
                                            hadoop_tmp_dir=uri(tmp_root))
        uris.append(runner._py_files())
        assert runner._py_files() == uris[-1]
        runner.cleanup()
    assert uris[0] == uris[1]  # the same copies for every job of the process
    assert all(stat.S_IMODE(os.stat(u[len("file://"):]).st_mode) == 0o600 for u in uris[0])
    assert [u.rsplit("/", 1)[1] for u in uris[0]] == ["mypkg-0001.zip", "mrjob.zip"]  # names kept
    for u in uris[0]:
        assert u.startswith(uri(tmp_root) + "/mr_tl-shared-%d-" % os.getpid())
        with zipfile.ZipFile(u[len("file://"):]) as z:
            assert any(n.endswith(".pyc") for n in z.namelist())
    assert calls(log) == []


def test_compiled_zip_imports_the_same_code(tmp_path):
    pkg = tmp_path / "src" / "zpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("VALUE = 41\n")
    (pkg / "mod.py").write_text("from zpkg import VALUE\n\ndef answer():\n    return VALUE + 1\n")
    (pkg / "broken.py").write_text("def (:\n")
    src = tmp_path / "zpkg-1234.zip"
    with zipfile.ZipFile(src, "w") as z:
        for f in sorted(pkg.iterdir()):
            z.write(f, "zpkg/" + f.name)
    twin = compat_runners.compiled_zip(str(src))
    assert os.path.basename(twin) == src.name and twin != str(src)
    assert compat_runners.compiled_zip(str(src)) == twin  # once per process and content
    names = zipfile.ZipFile(twin).namelist()
    assert "zpkg/mod.pyc" in names and "zpkg/__init__.pyc" in names and "zpkg/broken.pyc" not in names
    code = ("import sys; sys.path.insert(0, %r); import zpkg.mod as m; "
            "print(m.answer(), type(m.__loader__).__name__, m.__spec__.origin)" % twin)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "42" and out[1] == "zipimporter"


def test_mrjob_private_api_is_still_there(tmp_path):
    """FastHadoopJobRunner and jvm_free() rely on these mrjob 0.7.4 internals (compat_runners.MRJOB_PRIVATE_API)."""
    runner = compat_runners.FastHadoopJobRunner(hadoop_bin=["hadoop"], conf_paths=[], hadoop_tmp_dir=uri(tmp_path))
    try:
        assert runner._fs is None and runner._mrjob_zip_path is None  # before first use
        for dotted, name in compat_runners.MRJOB_PRIVATE_API:
            module, cls = dotted.rsplit(".", 1)
            owner = getattr(importlib.import_module(module), cls)
            instance = next(x for x in (runner, runner.fs) if isinstance(x, owner))
            assert hasattr(owner, name) or hasattr(instance, name), "%s.%s is gone" % (dotted, name)
        assert runner._opts["hadoop_bin"] == ["hadoop"]
        assert callable(runner._py_files) and callable(runner._create_mrjob_zip)
        assert runner.fs._fs_names[0] == "fast_local" and runner.fs._disabled == set()
    finally:
        runner.cleanup()
