"""A ``python_bin`` for mrjob that kills the first map task attempt it runs, once.

The test copies this file, puts the real python in its shebang line and sets
the constants below (see ``make_kill_once_python`` in test_hadoop_pipeline.py),
then runs a job with ``--python-bin COPY``.  Hadoop streaming starts
``COPY TASK_SCRIPT --step-num=0 --mapper ...`` for every map task attempt
(through mrjob's setup wrapper, which also calls ``COPY -c ...`` for its lock):

* the first ``--mapper`` call of job script SCRIPT that manages to create MARKER (O_EXCL, so one
  call in all) starts the real python on a pipe of FEED_PIPE_BYTES capacity,
  writes the first FEED_BYTES bytes of the task's input into it -- the write
  returns only once the mapper has read all but the pipe's capacity of them,
  so it has really read input -- then SIGKILLs it and exits with 137, as a
  shell does for a killed child: the attempt fails mid-input;
* every other call simply execs the real python.

MARKER (JSON) records the attempt id Hadoop gave the killed attempt
(``mapreduce_task_attempt_id`` from the streaming environment), the bytes the
mapper had read at least, and its exit status, for the test to check in the
job history.  Nothing here is part of mr_tl.
"""
import fcntl
import json
import os
import signal
import subprocess
import sys

REAL_PYTHON = None      # set by the test
MARKER = None           # set by the test
SCRIPT = None           # set by the test: only map tasks of this job script (e.g. train_round.py) are killed
FEED_BYTES = 32768
FEED_PIPE_BYTES = 4096
F_SETPIPE_SZ = 1031     # Linux fcntl


def kill_once():
    try:
        fd = os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    read_end, write_end = os.pipe()
    capacity = fcntl.fcntl(write_end, F_SETPIPE_SZ, FEED_PIPE_BYTES)
    child = subprocess.Popen([REAL_PYTHON] + sys.argv[1:], stdin=read_end)
    os.close(read_end)
    data = b''
    while len(data) < FEED_BYTES:
        block = sys.stdin.buffer.read1(FEED_BYTES - len(data))
        if not block:
            break
        data += block
    fed = 0
    while fed < len(data):  # blocks until the mapper has taken all but `capacity` bytes
        fed += os.write(write_end, data[fed:])
    alive_before_kill = child.poll() is None
    child.send_signal(signal.SIGKILL)
    status = child.wait()
    os.write(fd, json.dumps({
        'attempt': os.environ.get('mapreduce_task_attempt_id'),
        'task_input_bytes_fed': fed, 'pipe_capacity': capacity,
        'mapper_read_at_least': fed - capacity,
        'alive_before_kill': alive_before_kill, 'status': status,
        'argv': sys.argv[1:],
    }).encode())
    os.close(fd)
    os.close(write_end)
    return True


if __name__ == '__main__':
    script = next((os.path.basename(a) for a in sys.argv[1:] if a.endswith('.py')), None)
    if '--mapper' in sys.argv[1:] and script == SCRIPT and kill_once():
        sys.stdout.flush()
        os._exit(128 + signal.SIGKILL)
    os.execv(REAL_PYTHON, [REAL_PYTHON] + sys.argv[1:])
