"""Training the head: the hyperparameters, one round as pure functions, and the loop over rounds.

Nothing here knows mrjob.  The loop (:mod:`mr_tl.training.loop`) drives a
*round runner*: :class:`mr_tl.training.in_process.InProcessRunner` runs
rounds in this process (tests, benchmarks), and
:class:`mr_tl.jobs.round_runner.MapReduceRunner` runs them as MapReduce jobs
(every runner of mrjob).  Both call the same functions of
:mod:`mr_tl.training.round`, so they give the same bits.
"""
