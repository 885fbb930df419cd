"""A tiny mrjob word count used by the Hadoop harness smoke tests.

Not part of mr_tl: it only checks that mrjob + Hadoop streaming work.
Two steps would hide nothing more, so it is one step with a combiner.
"""
import re

from mrjob.job import MRJob

WORD_RE = re.compile(r"[\w']+")


class MRWordCount(MRJob):

    def mapper(self, _, line):
        for word in WORD_RE.findall(line):
            yield word.lower(), 1

    def combiner(self, word, counts):
        yield word, sum(counts)

    def reducer(self, word, counts):
        yield word, sum(counts)


if __name__ == '__main__':
    MRWordCount.run()
