"""An mr_tl job that reports where its map tasks ran (tests/engines/test_spark_pipeline.py).

One JSON line per map task: process ids, the Python running it, its working
directory, the thread variables mr_tl passes through cmdenv, the BLAS
threads numpy really uses, and where ``mr_tl`` and this module were imported
from.  Subclasses MRTLJob, so it ships the mr_tl package and sets the thread
variables exactly as the pipeline's jobs do.
"""
import json
import os
import sys

from mrjob.protocol import RawValueProtocol

from mr_tl.jobs.base import MRTLJob
from mr_tl.threads import THREAD_ENV_VARS


def blas_threads():
    """{library: threads} of the BLAS/OpenMP pools numpy has loaded (threadpoolctl), or None."""
    try:
        import numpy  # noqa: F401  (loads its BLAS)
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return {'%s/%s' % (i.get('user_api'), i.get('internal_api')): i.get('num_threads') for i in threadpool_info()}


class MRSparkProbe(MRTLJob):
    INPUT_PROTOCOL = RawValueProtocol
    OUTPUT_PROTOCOL = RawValueProtocol

    def mapper_init(self):
        self.lines = 0

    def mapper(self, _, line):
        self.lines += 1
        return iter(())

    def mapper_final(self):
        import mr_tl
        yield None, json.dumps({
            'pid': os.getpid(), 'ppid': os.getppid(), 'pgid': os.getpgid(0),
            'executable': sys.executable, 'prefix': sys.prefix, 'cwd': os.getcwd(),
            'env': {k: os.environ.get(k) for k in THREAD_ENV_VARS + ('PYSPARK_PYTHON', 'SPARK_HOME')},
            'blas_threads': blas_threads(),
            'mr_tl_file': mr_tl.__file__, 'module': __name__, 'lines': self.lines,
        }, sort_keys=True)


if __name__ == '__main__':
    MRSparkProbe.run()
