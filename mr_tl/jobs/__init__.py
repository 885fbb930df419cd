"""The MapReduce jobs: thin mrjob adapters over the pure core, one job per module.

``base``          what every mr_tl job shares (shipping the package, threads per task, the driver side)
``compat``        every use of mrjob's (and argparse's) private API, in one place, each pinned by a test
``compat_runners`` its driver-only half: mrjob's runners as mr_tl runs them (never imported by a task)
``jobconf``       the Hadoop configuration names the jobs set
``scan``          feature records -> counts, dimensions, bad vectors, duplicate ids, worker sizes, sums
``partition``     feature records -> the worker files of a training run (round records)
``train_round``   round records -> the next training state (local SGD, averaging), and scores
``round_runner``  the training loop's runner that runs scan, partition and rounds as jobs
``accounting``    input = done + rejected, the digests of what was read and written, the output check
``packed_images`` the mapper over packed images that featurize and predict share
``predict``       packed images (a classifier) or feature records (a run's head) -> predictions
``check_records`` a predict output -> counts per kind, digest, duplicate ids, rejected records

The featurize and evaluate jobs are their commands' modules (``mr_tl.featurize``,
``mr_tl.evaluate``), so ``python -m mr_tl.featurize`` is the job itself.
"""
