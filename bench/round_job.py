"""mr_tl's training round job with task-side timestamps, for bench/round_cost.py only.

Exactly :class:`mr_tl.jobs.train_round.MRTrainRound` (same steps, same code);
each task also writes one JSON file into ``$MR_TL_BENCH_TIMES`` (a folder
on this machine: standalone and the mini cluster run tasks here) with the
wall-clock start of its own process and of its two ancestors (the
setup-wrapper ``sh`` and, on YARN, the task JVM), when its work began
(``mapper_init`` / the ``reducer`` call) and when it ended.
"""

import time

T_IMPORT = time.time()  # before mrjob, numpy and mr_tl are imported

import json  # noqa: E402
import os  # noqa: E402

from mr_tl.jobs.train_round import MRTrainRound  # noqa: E402


def _proc_start(pid):
    """(command name, wall-clock start) of a process, from /proc (10 ms resolution)."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    ppid, start_ticks = int(fields[1]), int(fields[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return comm, ppid, time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def _ancestry(levels=3):
    out, pid = [], os.getpid()
    for _ in range(levels):
        try:
            comm, ppid, start = _proc_start(pid)
        except (OSError, ValueError, IndexError):
            break
        out.append({"pid": pid, "comm": comm, "start": start})
        pid = ppid
    return out


class MRTimedTrainRound(MRTrainRound):
    """MRTrainRound plus a timing file per task (see the module docstring)."""

    def _write_times(self, role, t_init):
        folder = os.environ.get("MR_TL_BENCH_TIMES")
        if not folder:
            return
        record = {"role": role, "t_import": T_IMPORT, "t_init": t_init, "t_end": time.time(),
                  "procs": _ancestry(), "input": os.environ.get("mapreduce_map_input_file")}
        path = os.path.join(folder, "%s-%d.json" % (role, os.getpid()))
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)

    def mapper_init(self):
        self._t_init = time.time()
        super().mapper_init()

    def mapper_final(self):
        yield from super().mapper_final()
        self._write_times("map", self._t_init)

    def reducer(self, key, lines):
        t_init = time.time()
        yield from super().reducer(key, lines)
        self._write_times("reduce", t_init)


if __name__ == "__main__":
    MRTimedTrainRound.run()
