"""mr_tl.storage's handling of remote (hdfs://) paths, without Hadoop: the
path logic, and what happens when the hadoop command cannot run.  (The
real thing is exercised by test_hadoop_pipeline.py.)"""
import pytest

from mr_tl import storage
from mr_tl.errors import InputError


@pytest.mark.parametrize('path, pattern, expected', [
    ('hdfs:///d/features', 'part-*', ['hdfs:///d/features/part-*']),
    ('hdfs:///d/features/', 'part-*', ['hdfs:///d/features/part-*']),
    ('hdfs:///d/features/part-00003', 'part-*', ['hdfs:///d/features/part-00003']),
    ('hdfs://nn:8020/d/features/part-*', 'part-*', ['hdfs://nn:8020/d/features/part-*']),
    ('hdfs:///d/packed', '.tsv', ['hdfs:///d/packed/*.tsv']),
    ('hdfs:///d/packed/train-00000.tsv', '.tsv', ['hdfs:///d/packed/train-00000.tsv']),
])
def test_expand_inputs_of_remote_paths(path, pattern, expected):
    assert storage.expand_inputs([path], pattern) == expected


def test_expand_inputs_of_file_uris_are_local_paths(tmp_path):
    (tmp_path / 'part-00000').write_text('x\n')
    (tmp_path / '_SUCCESS').write_text('')
    assert storage.expand_inputs(['file://%s' % tmp_path], 'part-*') == [str(tmp_path / 'part-00000')]


def test_path_part():
    assert storage.path_part('hdfs:///a/b') == '/a/b'
    assert storage.path_part('hdfs://nn:8020/a/b/') == '/a/b/'
    assert storage.path_part('hdfs://nn:8020') == '/'


def test_read_text_of_a_file_uri_reads_the_local_file(tmp_path):
    (tmp_path / 'labels.json').write_text('{"classes": []}')
    fs = storage.filesystem(['/nonexistent/hadoop'])  # never called for file://
    assert storage.read_text(fs, 'file://%s/labels.json' % tmp_path) == '{"classes": []}'
    assert storage.read_text(fs, 'file://%s/missing.json' % tmp_path) is None


@pytest.mark.parametrize('call', [
    lambda fs: storage.read_text(fs, 'hdfs:///d/_labels.json'),
    lambda fs: storage.find_labels(['hdfs:///d/features'], fs),
    lambda fs: storage.list_data_files(fs, ['hdfs:///d/features'], 'part-*'),
    lambda fs: list(storage.iter_lines(fs, ['hdfs:///d/features/part-00000'])),
])
def test_a_hadoop_command_that_cannot_run_is_an_error_not_a_missing_file(call, tmp_path):
    """Before, a missing hadoop command made _labels.json look absent ("give
    --labels"); now the error names the command and how to give it."""
    fs = storage.filesystem(str(tmp_path / 'no-such-hadoop'))
    with pytest.raises(InputError, match=r'no-such-hadoop.*--hadoop-bin'):
        call(fs)


def test_filesystem_takes_a_string_or_mrjobs_list():
    assert storage.filesystem('/opt/h/bin/hadoop --config /c').hadoop.get_hadoop_bin() == \
        ['/opt/h/bin/hadoop', '--config', '/c']
    assert storage.filesystem(['/opt/h/bin/hadoop']).hadoop.get_hadoop_bin() == ['/opt/h/bin/hadoop']


def test_runner_hadoop_bin_comes_from_the_mrjob_conf(tmp_path):
    from mr_tl.jobs.base import runner_hadoop_bin
    from mr_tl.jobs.train_round import MRTrainRound

    conf = tmp_path / 'mrjob.conf'
    conf.write_text('{"runners": {"hadoop": {"hadoop_bin": "/opt/h/bin/hadoop"}}}')
    assert runner_hadoop_bin(MRTrainRound(['-r', 'hadoop', '-c', str(conf)])) == ['/opt/h/bin/hadoop']
    assert runner_hadoop_bin(MRTrainRound(['-r', 'hadoop', '-c', str(conf),
                                           '--hadoop-bin', '/x/hadoop'])) == ['/x/hadoop']
    assert runner_hadoop_bin(MRTrainRound(['-r', 'local'])) is None
