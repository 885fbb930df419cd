"""pytest fixtures for running mrjob jobs on real Apache Hadoop.

Loaded by ``tests/engines/conftest.py`` (``from conftest_hadoop import *``);
any other conftest.py can do the same.  See ``tests/hadoop_harness.py``.

Session-scoped (built once per run; treat as read-only, put your data under
your own HDFS / local paths):

``hadoop_home``        :class:`hadoop_harness.HadoopHome`; runs ``hadoop/fetch``
                       (downloads ~115 MB of jars on first use, then cached);
                       skips the test if Java or Maven is missing.
``hadoop_standalone``  :class:`hadoop_harness.Standalone` (local job runner).
``hadoop_cluster``     :class:`hadoop_harness.MiniCluster`, started on first
                       use (~15-25 s) and stopped at the end of the session.

Mark such tests ``@pytest.mark.hadoop`` (``-m "not hadoop"`` deselects them;
``MR_TL_SKIP_HADOOP=1`` skips them).
"""
import hadoop_harness
import pytest

__all__ = ['pytest_configure', 'pytest_terminal_summary', 'hadoop_home',
           'hadoop_standalone', 'hadoop_cluster']


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'hadoop: runs real Apache Hadoop (standalone or the mini cluster)')


def pytest_terminal_summary(terminalreporter):
    if hadoop_harness.TIMINGS:
        terminalreporter.write_sep('-', 'Apache Hadoop harness timings (s)')
        for name, seconds in hadoop_harness.TIMINGS.items():
            terminalreporter.write_line('%-45s %7.1f' % (name, seconds))


@pytest.fixture(scope='session')
def hadoop_home():
    return hadoop_harness.hadoop_home()


@pytest.fixture(scope='session')
def hadoop_standalone(hadoop_home, tmp_path_factory):
    return hadoop_harness.Standalone(
        tmp_path_factory.mktemp('hadoop-standalone'), hadoop_home)


@pytest.fixture(scope='session')
def hadoop_cluster(hadoop_home, tmp_path_factory):
    cluster = hadoop_harness.MiniCluster(
        tmp_path_factory.mktemp('hadoop-cluster'), hadoop_home)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
