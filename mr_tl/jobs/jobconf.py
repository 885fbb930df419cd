"""Hadoop configuration names mr_tl's jobs set (and mrjob's local and inline runners honour, through
mr_tl.jobs.compat_runners), defined once.  Importing this module imports nothing."""

# Hadoop makes one input split per file when this is larger than every file
# (``splitSize = max(minSize, min(maxSize, blockSize))``).
SPLIT_MINSIZE = "mapreduce.input.fileinputformat.split.minsize"
ONE_SPLIT_PER_FILE = {SPLIT_MINSIZE: str(2 ** 63 - 1)}

# how many reduce tasks a job runs (0: map-only, the mappers' output is the job's)
REDUCES = "mapreduce.job.reduces"
