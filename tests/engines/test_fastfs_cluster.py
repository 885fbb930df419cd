"""mr_tl.fastfs against real Hadoop 3.5.0: the same answers as mrjob's HadoopFilesystem (`hadoop fs`)
for the same paths, on standalone (file://, Python file operations) and on the mini cluster's HDFS
(WebHDFS found through the cluster's configuration); and FastHadoopJobRunner running a job on both
with no `hadoop fs` command at all."""
import collections
import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mrjob.fs.hadoop import HadoopFilesystem

from mr_tl import fastfs
from mr_tl.jobs import compat_runners

pytestmark = pytest.mark.hadoop

HERE = Path(__file__).resolve().parent

# name -> content; folders, an empty file, hidden files, a non-ASCII name with a space
FILES = {
    "d/a.txt": b"a\n",
    "d/b.txt": b"bb\n",
    "d/empty": b"",
    "d/.dot": b"dot\n",
    "d/e/\u00fc n.txt": "\u00fc\n".encode("utf-8"),
    "d/e/f/deep.csv": b"1,2\n",
    "x/part-00000": b"p0\n",
    "x/part-00001.gz": gzip.compress(b"p1\n"),
    "x/_SUCCESS": b"",
}

# globs mrjob passes on (ls -R, exists, du): patterns, braces, missing paths, files, folders
# (every reference answer is a `hadoop fs` JVM: a dozen, not a hundred)
PATHS = ["", "/d/*", "/d/?.txt", "/d/[ab].txt", "/d/{a.txt,empty,nope}", "/*/e", "/x/part-*",
         "/d/e/\u00fc n.txt", "/emptydir", "/nope*", "/d/a.txt/under-a-file"]
QUALIFIED = ("", "/d/{a.txt,empty,nope}", "/nope*")  # also as hdfs://host:port/... on the cluster


def make_local_tree(root):
    for name, data in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "emptydir").mkdir()


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def hadoop_mode(request):
    return request.getfixturevalue("hadoop_" + request.param)


@pytest.fixture(scope="module")
def trees(hadoop_mode, tmp_path_factory):
    """(mode, base URI of a tree written with `hadoop fs -put`, fast fs, mrjob's hadoop fs)."""
    local = tmp_path_factory.mktemp("fastfs-tree") / "tree"
    make_local_tree(local)
    if hadoop_mode.name == "standalone":
        base = hadoop_mode.uri(tmp_path_factory.mktemp("fastfs-standalone")) + "/t"
    else:
        base = "hdfs:///fastfs/t"
        hadoop_mode.fs("-mkdir", "-p", "/fastfs")
    # one JVM writes it all (on standalone: with Hadoop's .crc files beside the files)
    hadoop_mode.fs("-put", str(local), base)
    hadoop_bin = [str(hadoop_mode.hadoop_bin)]
    return hadoop_mode, base, fastfs.filesystem(hadoop_bin), HadoopFilesystem(hadoop_bin)


def test_the_fast_filesystem_is_the_one_answering(trees):
    mode, base, fast, _ = trees
    if mode.name == "standalone":
        assert fast.fast_local.can_handle_path(base)
        assert any(n.endswith(".crc") for _, _, names in os.walk(base[len("file://"):]) for n in names)
    else:
        assert fast.webhdfs.can_handle_path(base)
        assert fast.webhdfs.can_handle_path(mode.uri("/fastfs"))  # hdfs://127.0.0.1:PORT/...
        default_fs, http = fastfs.namenode_config([str(mode.hadoop_bin)])
        assert (default_fs, "http://" + http) == (mode.hdfs_uri, mode.nn_web)


@pytest.mark.parametrize("suffix", PATHS)
def test_ls_is_the_same(trees, suffix):
    mode, base, fast, hadoop = trees
    prefixes = [base]
    if mode.name == "cluster" and suffix in QUALIFIED:
        prefixes.append(mode.uri(base[len("hdfs://"):]))
    for prefix in prefixes:
        assert sorted(fast.ls(prefix + suffix)) == sorted(hadoop.ls(prefix + suffix)), prefix + suffix


@pytest.mark.parametrize("suffix", ["", "/d/*.txt", "/emptydir", "/nope*"])
def test_exists_and_du_are_the_same(trees, suffix):
    _, base, fast, hadoop = trees
    assert fast.exists(base + suffix) == hadoop.exists(base + suffix)
    assert fast.du(base + suffix) == hadoop.du(base + suffix)


@pytest.mark.parametrize("name", ["d/a.txt", "d/empty", "d/e/\u00fc n.txt", "x/part-00001.gz"])
def test_cat_is_the_same(trees, name):
    _, base, fast, hadoop = trees
    uri = base + "/" + name
    assert b"".join(fast._cat_file(uri)) == b"".join(hadoop._cat_file(uri))


def test_cat_of_a_glob_is_the_same(trees):
    _, base, fast, hadoop = trees
    assert list(fast.cat(base + "/x/part-*")) == list(hadoop.cat(base + "/x/part-*"))


def test_missing_and_folders_cannot_be_read(trees):
    _, base, fast, hadoop = trees
    for uri in (base + "/nope", base + "/d"):
        with pytest.raises(OSError):
            b"".join(fast._cat_file(uri))
        with pytest.raises(OSError):
            b"".join(hadoop._cat_file(uri))


def test_writes_are_seen_by_hadoop(trees, tmp_path):
    """mkdir, put, touchz, rm by the fast filesystem, checked with `hadoop fs`; the refusals of
    `hadoop fs` are refusals here too."""
    mode, base, fast, hadoop = trees
    w = base + "/written"
    src = tmp_path / "src.txt"
    src.write_bytes("h\u00e4llo\n".encode("utf-8"))
    fast.mkdir(w + "/sub/deeper")
    fast.mkdir(w + "/sub/deeper")
    fast.put(str(src), w + "/sub/\u00fc n.txt")
    fast.touchz(w + "/zero")
    assert sorted(hadoop.ls(w)) == [w + "/sub/\u00fc n.txt", w + "/zero"]
    assert b"".join(hadoop._cat_file(w + "/sub/\u00fc n.txt")) == src.read_bytes()
    assert hadoop.exists(w + "/sub/deeper")
    for fs in (fast, hadoop):
        with pytest.raises((OSError, subprocess.CalledProcessError)):
            fs.put(str(src), w + "/zero")                 # exists
        with pytest.raises((OSError, subprocess.CalledProcessError)):
            fs.put(str(src), w + "/missing/x.txt")        # no such folder
        with pytest.raises(OSError):
            fs.touchz(w + "/sub/\u00fc n.txt")            # not a zero-length file
        with pytest.raises(OSError):
            fs.mkdir(w + "/zero/sub")                     # a file in the way
    # a file Hadoop wrote (with its .crc on standalone), removed and written again by the fast fs:
    # Hadoop reads the new one without a checksum error
    hadoop.put(str(src), w + "/again.txt")
    fast.rm(w + "/again.txt")
    other = tmp_path / "other.txt"
    other.write_bytes(b"something else\n")
    fast.put(str(other), w + "/again.txt")
    assert b"".join(hadoop._cat_file(w + "/again.txt")) == b"something else\n"
    fast.rm(w + "/sub")
    assert sorted(hadoop.ls(w)) == [w + "/again.txt", w + "/zero"]
    fast.rm(w)
    assert not hadoop.exists(w)


TEXT = "the quick brown fox jumps over the lazy dog\nThe dog sleeps\n\u00e9t\u00e9 \u00e9t\u00e9\n"


def test_fast_runner_runs_a_job_without_hadoop_fs(hadoop_mode, tmp_path, monkeypatch):
    """A word count through FastHadoopJobRunner: the right output, and the only `hadoop` commands
    besides `hadoop jar` are at most one `hadoop version` per process."""
    sys.path.insert(0, str(HERE))
    try:
        from mr_word_count import WORD_RE, MRWordCount
    finally:
        sys.path.remove(str(HERE))
    local = tmp_path / "words.txt"
    local.write_text(TEXT, encoding="utf-8")
    fs = fastfs.filesystem([str(hadoop_mode.hadoop_bin)])
    if hadoop_mode.name == "cluster":
        fs.mkdir("hdfs:///fastfs-job")
        fs.rm("hdfs:///fastfs-job/words.txt")
        fs.put(str(local), "hdfs:///fastfs-job/words.txt")
        source = "hdfs:///fastfs-job/words.txt"
    else:
        source = str(local)
    commands = []
    orig = HadoopFilesystem.invoke_hadoop

    def invoke_hadoop(self, args, *a, **k):
        commands.append(args[0])
        return orig(self, args, *a, **k)
    monkeypatch.setattr(HadoopFilesystem, "invoke_hadoop", invoke_hadoop)
    monkeypatch.chdir(tmp_path)
    job = MRWordCount(hadoop_mode.mrjob_args() + [source])
    job._runner_class = lambda: compat_runners.FastHadoopJobRunner
    with job.make_runner() as runner:
        assert isinstance(runner, compat_runners.FastHadoopJobRunner)
        runner.run()
        rows = dict(job.parse_output(runner.cat_output()))
        tmp_dir = runner._hadoop_tmp_dir
    expected = collections.Counter(w.lower() for w in WORD_RE.findall(TEXT))
    assert rows == expected
    assert commands in ([], ["version"])
    assert not fs.exists(tmp_dir)  # cleaned up
    if hadoop_mode.name == "cluster":
        assert re.match(r"hdfs://", tmp_dir)
        fs.rm("hdfs:///fastfs-job")
