"""How many threads a process may use: cores it is allowed to run on, and the variables that pin it."""

import os

# onnxruntime (via MR_TL_THREADS) and the BLAS libraries numpy may use
THREAD_ENV_VARS = ("MR_TL_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores():
    """Cores this process may use (respects CPU affinity, e.g. YARN cgroups/taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_in_task(option_value):
    """The thread count a running task should use: the option, else what the driver put in MR_TL_THREADS."""
    if option_value:
        return int(option_value)
    return int(os.environ.get("MR_TL_THREADS", "1"))


def task_threads(runner_alias, num_cores=None):
    """Threads each task may use when the user did not say (``--threads 0``)."""
    cores = available_cores()
    if runner_alias == "inline":  # one task at a time, in this process
        return cores
    if runner_alias == "local":  # mrjob runs num_cores tasks at once
        return max(1, cores // max(1, num_cores or cores))
    # Hadoop/Spark/EMR/Dataproc: a container has one vcore unless you ask for more
    # (-D mapreduce.map.cpu.vcores=N together with --threads N).
    return 1
