"""pytest fixtures for running mrjob jobs on a real Spark cluster (see tests/spark_harness.py).

Not a conftest.py (tests/engines/conftest.py belongs to the Hadoop tests):
a test module imports the fixtures it needs::

    from conftest_spark import spark_cluster  # noqa: F401  (a fixture)

``spark_cluster``   :class:`spark_harness.StandaloneCluster`, a standalone master and one
                    worker (2 cores) on 127.0.0.1, started on first use (~10-20 s) and
                    stopped at the end of the session; skips the test if pyspark or
                    Java 17+ is missing (``MR_TL_REQUIRE_SPARK=1``: fail instead),
                    or if ``MR_TL_SKIP_SPARK=1``.

Mark such tests ``@pytest.mark.spark`` (``-m "not spark"`` deselects them).
The harness timings are printed at the end of the run.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import spark_harness  # noqa: E402

__all__ = ['spark_cluster']


class _TimingsReport:
    """A plugin registered at run time (a test module cannot define hooks itself)."""

    def pytest_terminal_summary(self, terminalreporter):
        if spark_harness.TIMINGS:
            terminalreporter.write_sep('-', 'Spark harness timings (s)')
            for name, seconds in spark_harness.TIMINGS.items():
                terminalreporter.write_line('%-50s %7.1f' % (name, seconds))


def _report_timings(config):
    if not config.pluginmanager.has_plugin('mr_tl_spark_timings'):
        config.pluginmanager.register(_TimingsReport(), 'mr_tl_spark_timings')


@pytest.fixture(scope='session')
def spark_cluster(request, tmp_path_factory):
    _report_timings(request.config)
    home, java_home = spark_harness.check_available(skip=True)
    cluster = spark_harness.StandaloneCluster(tmp_path_factory.mktemp('spark-cluster'),
                                              pyspark_home=home, java_home=java_home)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
