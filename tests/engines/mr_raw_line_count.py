"""A tiny mrjob job with ``mapper_raw``: each map task gets one whole input
file, which mrjob's input-manifest wrapper downloads inside the task with
``hadoop fs -copyToLocal`` (so the hadoop launcher must work inside YARN
containers).  Emits (file name, number of lines).  Used by the Hadoop
harness smoke tests; not part of mr_tl.
"""
import posixpath

from mrjob.job import MRJob


class MRRawLineCount(MRJob):

    def mapper_raw(self, input_path, input_uri):
        with open(input_path, 'rb') as f:
            n = sum(1 for _ in f)
        yield posixpath.basename(input_uri), n

    def reducer(self, name, counts):
        yield name, sum(counts)


if __name__ == '__main__':
    MRRawLineCount.run()
