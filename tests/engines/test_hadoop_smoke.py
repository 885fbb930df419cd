"""Smoke tests of the Apache Hadoop harness: real Hadoop 3.5.0 (jars from
Maven Central) in standalone mode and on a single-node mini cluster, driven
through hadoop/bin/hadoop exactly the way mrjob 0.7.4 drives it."""
import collections
import json
import os
import re
import time
from pathlib import Path

import hadoop_harness
import pytest

pytestmark = pytest.mark.hadoop

HERE = Path(__file__).resolve().parent
WORD_COUNT = HERE / 'mr_word_count.py'
RAW_LINE_COUNT = HERE / 'mr_raw_line_count.py'

TEXT = ('the quick brown fox jumps over the lazy dog\n'
        'The dog sleeps\n'
        "and the fox doesn't\n")
EXPECTED = collections.Counter(re.findall(r"[\w']+", TEXT.lower()))


def parse_job_output(stdout):
    rows = {}
    for line in stdout.splitlines():
        if line.strip():
            key, value = line.split('\t', 1)
            rows[json.loads(key)] = json.loads(value)
    return rows


def timed(name, fn, *args, **kwargs):
    t0 = time.time()
    result = fn(*args, **kwargs)
    hadoop_harness.TIMINGS[name] = round(time.time() - t0, 1)
    return result


# --- the launcher ---------------------------------------------------------------

def test_version_as_mrjob_parses_it(hadoop_standalone):
    from mrjob.fs.hadoop import HadoopFilesystem
    out = hadoop_standalone.hadoop('version').stdout
    assert out.splitlines()[0] == 'Hadoop 3.5.0'
    fs = HadoopFilesystem([str(hadoop_standalone.hadoop_bin)])
    assert fs.get_hadoop_version() == '3.5.0'


def test_launcher_commands(hadoop_standalone):
    cp = hadoop_standalone.hadoop('classpath').stdout.strip()
    assert cp.split(':')[0] == str(hadoop_harness.HADOOP_DIR / 'conf-standalone')
    assert cp.endswith('/lib/*')
    # any fully-qualified class name runs that class
    out = hadoop_standalone.hadoop('org.apache.hadoop.util.VersionInfo').stdout
    assert out.startswith('Hadoop 3.5.0')
    bad = hadoop_standalone.hadoop('nosuchcommand', check=False)
    assert bad.returncode != 0 and 'unknown command' in bad.stderr


def _check_fs_commands(mode, base, local_file):
    """The hadoop fs calls mrjob 0.7.4 makes, in its exact forms."""
    sub = base + '/a/b'
    mode.fs('-mkdir', '-p', sub)
    mode.fs('-mkdir', '-p', sub)  # idempotent
    mode.fs('-put', str(local_file), sub + '/words.txt')
    mode.fs('-touchz', base + '/a/_SUCCESS')
    listing = mode.fs('-ls', '-R', base).stdout
    # lines end in the path, or the URI when a URI was listed
    at = r'\s(?:[a-z]+://[^/]*)?' + re.escape(_path(base))
    assert re.search(r'^-.*%s/a/b/words\.txt$' % at, listing, re.M), listing
    assert re.search(r'^d.*%s/a/b$' % at, listing, re.M), listing
    assert mode.fs('-cat', sub + '/words.txt').stdout == TEXT
    du = mode.fs('-du', sub).stdout.split()
    assert int(du[0]) == len(TEXT.encode())
    copy = local_file.parent / 'copy.txt'
    mode.fs('-copyToLocal', sub + '/words.txt', str(copy))
    assert copy.read_text() == TEXT
    # a missing path: exit 1 and exactly the message mrjob matches
    missing = mode.fs('-ls', base + '/nope', check=False)
    assert missing.returncode == 1
    assert re.match(br'^lsr?: .*No such file.*$', missing.stderr.encode()), missing.stderr
    mode.fs('-rm', '-R', '-f', '-skipTrash', base + '/a')
    assert mode.fs('-ls', base + '/a', check=False).returncode == 1
    # rm -f of something missing is fine
    mode.fs('-rm', '-R', '-f', '-skipTrash', base + '/a')

    # and mrjob's own HadoopFilesystem on top of it
    from mrjob.fs.hadoop import HadoopFilesystem
    fs = HadoopFilesystem([str(mode.hadoop_bin)])
    target = base + '/mrjob-fs'
    fs.mkdir(target)
    fs.put(str(local_file), target + '/w.txt')
    fs.touchz(target + '/empty')
    assert fs.exists(target + '/w.txt')
    assert not fs.exists(target + '/missing')
    assert sorted(p.rsplit('/', 1)[1] for p in fs.ls(target)) == ['empty', 'w.txt']
    assert fs.du(target) == len(TEXT.encode())
    assert b''.join(fs.cat(target + '/w.txt')).decode() == TEXT
    fs.rm(target)
    assert not fs.exists(target)


def _path(uri):
    return re.sub(r'^[a-z]+://[^/]*', '', uri)


# --- standalone -------------------------------------------------------------------

def test_fs_commands_standalone(hadoop_standalone, tmp_path):
    local = tmp_path / 'words.txt'
    local.write_text(TEXT)
    base = hadoop_standalone.uri(tmp_path / 'fs')
    _check_fs_commands(hadoop_standalone, base, local)


def test_word_count_standalone(hadoop_standalone, tmp_path):
    local = tmp_path / 'words.txt'
    local.write_text(TEXT)
    proc = timed('word count job, standalone (subprocess)',
                 hadoop_standalone.run_job, WORD_COUNT, str(local))
    assert parse_job_output(proc.stdout) == EXPECTED
    # it really went through Hadoop's local job runner and streaming
    assert 'job_local' in proc.stderr
    assert 'Counters:' in proc.stderr


def test_word_count_standalone_in_process(hadoop_standalone, tmp_path, monkeypatch):
    """The way mr_tl tests run jobs: MRJob(args).make_runner() in this process."""
    import sys
    sys.path.insert(0, str(HERE))
    try:
        from mr_word_count import MRWordCount
    finally:
        sys.path.remove(str(HERE))
    local = tmp_path / 'words.txt'
    local.write_text(TEXT)
    monkeypatch.chdir(tmp_path)
    job = MRWordCount(hadoop_standalone.mrjob_args() + [str(local)])
    with job.make_runner() as runner:
        runner.run()
        rows = dict(job.parse_output(runner.cat_output()))
        counters = runner.counters()
    assert rows == EXPECTED
    assert counters[0]['Map-Reduce Framework']['Map input records'] == 3
    # the local job runner ran in the wrapper's scratch dir, not here
    assert sorted(os.listdir(tmp_path)) == ['words.txt']


def test_raw_input_manifest_standalone(hadoop_standalone, tmp_path):
    for name, n in (('two.txt', 2), ('three.txt', 3)):
        (tmp_path / name).write_text(''.join('line %d\n' % i for i in range(n)))
    proc = hadoop_standalone.run_job(RAW_LINE_COUNT, str(tmp_path / 'two.txt'),
                                     str(tmp_path / 'three.txt'))
    assert parse_job_output(proc.stdout) == {'two.txt': 2, 'three.txt': 3}


# --- pseudo-distributed (mini cluster) ------------------------------------------

def test_cluster_is_up(hadoop_cluster):
    assert hadoop_cluster.hdfs_uri.startswith('hdfs://127.0.0.1:')
    assert hadoop_cluster.is_running()
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(hadoop_cluster.rm_web + '/ws/v1/cluster/metrics',
                     timeout=10) as resp:
        metrics = json.load(resp)['clusterMetrics']
    assert metrics['activeNodes'] == 1
    assert metrics['totalMB'] >= 4096
    # default file system of the clients is the cluster's HDFS
    listing = hadoop_cluster.fs('-ls', '/').stdout
    assert '/tmp' in listing


def test_fs_commands_cluster(hadoop_cluster, tmp_path):
    local = tmp_path / 'words.txt'
    local.write_text(TEXT)
    _check_fs_commands(hadoop_cluster, 'hdfs:///smoke/fs', local)
    # fully qualified URIs work too
    hadoop_cluster.fs('-mkdir', '-p', hadoop_cluster.uri('/smoke/fq'))
    assert hadoop_cluster.fs('-ls', '-d', hadoop_cluster.uri('/smoke/fq')).returncode == 0
    hadoop_cluster.fs('-rm', '-R', '-f', '-skipTrash', '/smoke')


def test_word_count_cluster(hadoop_cluster, tmp_path):
    local = tmp_path / 'words.txt'
    local.write_text(TEXT)
    hadoop_cluster.fs('-mkdir', '-p', '/data/wordcount')
    hadoop_cluster.fs('-put', '-f', str(local), '/data/wordcount/words.txt')
    proc = timed('word count job, mini cluster (subprocess)',
                 hadoop_cluster.run_job, WORD_COUNT,
                 'hdfs:///data/wordcount/words.txt',
                 '--output-dir', 'hdfs:///out/wordcount', '--cat-output')
    assert parse_job_output(proc.stdout) == EXPECTED
    assert re.search(r'application_\d+_\d+', proc.stderr)  # ran on YARN
    # the output stays on HDFS
    parts = hadoop_cluster.fs('-cat', '/out/wordcount/part-*').stdout
    assert parse_job_output(parts) == EXPECTED
    hadoop_cluster.fs('-rm', '-R', '-f', '-skipTrash', '/out/wordcount')


def test_raw_input_manifest_cluster(hadoop_cluster, tmp_path):
    """mapper_raw: the task runs `hadoop fs -copyToLocal` inside its YARN
    container, so the launcher, Java and HADOOP_CONF_DIR work there."""
    hadoop_cluster.fs('-mkdir', '-p', '/data/raw')
    for name, n in (('two.txt', 2), ('three.txt', 3)):
        (tmp_path / name).write_text(''.join('line %d\n' % i for i in range(n)))
        hadoop_cluster.fs('-put', '-f', str(tmp_path / name), '/data/raw/' + name)
    proc = timed('mapper_raw job, mini cluster (subprocess)',
                 hadoop_cluster.run_job, RAW_LINE_COUNT,
                 'hdfs:///data/raw/two.txt', 'hdfs:///data/raw/three.txt')
    assert parse_job_output(proc.stdout) == {'two.txt': 2, 'three.txt': 3}
