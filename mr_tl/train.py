"""python -m mr_tl.train -r RUNNER FEATURES... -o RUN_DIR: train a softmax head, one MapReduce job per round.

    python -m mr_tl.train -r local features/ -o runs/demo --epochs 20 --workers 2
    python -m mr_tl.train -r local features/ -o runs/ref --recipe reference --validate-every 5
    python -m mr_tl.train -r local features/ -o runs/grid --candidates "lr=0.003,0.01,0.03 hidden=0,512"
    python -m mr_tl.train -r hadoop -c mrjob.conf hdfs:///data/features -o runs/caltech \\
        --work-dir hdfs:///data/work --workers 8 --epochs 10 --validate-every 2

Recipes (``--recipe``) give every hyperparameter a value; a flag given on
the command line overrides it (``--lr 0.05`` trains that one lr).
``reference``: Deeplearning4j's ParameterAveragingTrainingMaster (seed 42,
Xavier init, Nesterovs lr 0.01 momentum 0.8, batch 32 per worker, averaging
every 5 minibatches, plain averaging, no normalization, no hidden layer).
``default``: what measures best: averaging once per pass over each worker's
data (``--averaging-frequency epoch``: far fewer jobs), block momentum in
the averaging step (keeps the accuracy of one worker with many), and candidates
over the learning rate and L2.  Each option's help names both recipes' values.

Candidates (``--candidates GRID``, a product grid over lr, l2, momentum,
hidden): several heads trained side by side in the same round jobs, on the
same minibatches, over one read of the data; the best on the val split (val
accuracy; ties: the earlier round, then the lower index) is the run's
head, and metrics.jsonl holds every candidate's numbers.  They need a val
split; without ``--validate-every`` they are validated after the last round.
A candidate that diverges is dropped (the others go on).  ``--candidates
none`` (or one value for each of its fields) trains one head.

What happens (the driver holds the model, counts and file names; the jobs move the data):
1. A scan job reads the features (complete featurize or parquet output
   folders, local or hdfs://) and reports counts per split, dimensions, bad
   vectors, duplicate ids, examples per worker and the data's fingerprint;
   the command refuses features that do not add up to their summary.
2. A partition job deals the train split to ``--workers`` workers (by a
   seeded hash of each id: adding an image never moves another) and writes
   the worker files into ``--work-dir``, one per round map task;
   ``--resume`` reuses them.
3. Each round is one job (mr_tl.jobs.train_round): every worker runs
   ``--averaging-frequency`` minibatches from the current state; their sums are
   averaged (parameters and optimizer state; then the outer optimizer), for
   every candidate, by the driver from a map-only job's output (up to 8 round
   tasks) or by the job's reducer.  With ``--validate-every N`` the next
   round's job also scores the state on the val split and the training
   examples.
4. After every round: a checkpoint (atomic, checksummed) in
   RUN_DIR/checkpoints, a line in RUN_DIR/metrics.jsonl, a progress line.
   ``--resume`` continues from the last good checkpoint, bit-identically, and
   refuses if the configuration or the features changed.
5. At the end: RUN_DIR/head.npz (the best candidate; its meta names it),
   config.json (the recipe and every value), labels.json.

Options this command does not know are passed to mrjob (e.g. ``-c
mrjob.conf``, ``--hadoop-streaming-jar``, ``--num-cores``, ``-D k=v``).
"""

import argparse
import logging
import os
import sys

from mr_tl.cli import disk_full_message, is_disk_full, run_command
from mr_tl.errors import TrainingError, UsageError
from mr_tl.training.hyperparameters import DEFAULT_RECIPE, NAMES, RECIPES, Candidates, resolve
from mr_tl.training.loop import Schedule, Trainer

RUNNERS = ("inline", "local", "hadoop", "spark", "emr", "dataproc")
LOCAL_RUNNERS = ("inline", "local")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m mr_tl.train", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("features", nargs="+", help="features folders (featurize output, or a Parquet dataset "
                                               "folder written by python -m mr_tl.parquet)")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run directory to create or resume")
    p.add_argument("-r", "--runner", default="local", choices=RUNNERS, help="mrjob runner for the jobs (default local)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training data (default 10)")
    p.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                   help="the values of every hyperparameter not given as a flag (default: %r)" % DEFAULT_RECIPE)
    Candidates.add_arguments(p.add_argument, recipe_defaults=True)
    p.add_argument("--tasks", type=int, default=0,
                   help="map tasks to spread the workers over (default: one per worker); does not change results")
    p.add_argument("--validate-every", type=int, default=0, metavar="N",
                   help="score the val split every N rounds (and after the last; with candidates, after "
                        "the last round anyway)")
    p.add_argument("--early-stopping", type=int, default=0, metavar="PATIENCE",
                   help="stop after PATIENCE validations without a better val accuracy (of any candidate); "
                        "keep the best head")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last good checkpoint")
    p.add_argument("--stop-after-rounds", type=int, default=0, metavar="N",
                   help="stop after N rounds of this invocation, without writing the head (continue with --resume)")
    p.add_argument("--round-retries", type=int, default=2, metavar="N",
                   help="run a failed round job again up to N times (default 2); rounds are deterministic, "
                        "so a retried round gives the same result")
    p.add_argument("--work-dir", help="where the worker files go: a folder the jobs can read and write (default "
                                      "RUN_DIR/data; on a cluster e.g. hdfs:///user/me/mr_tl-work/run1)")
    p.add_argument("--hadoop-bin", help="hadoop command for hdfs:// paths in the driver")
    p.add_argument("-v", "--verbose", action="store_true", help="show mrjob's log")
    return p


def default_work_dir(args):
    """RUN_DIR/data; for Hadoop and other cluster runners as a ``file://`` URI (Hadoop standalone)."""
    path = os.path.abspath(os.path.join(args.output, "data"))
    return path if args.runner in LOCAL_RUNNERS else "file://" + path


def train(args, runner_args, out=print):
    """Run (or resume) a training run from parsed arguments; returns the RunDir."""
    from mr_tl.jobs.round_runner import MapReduceRunner

    candidates = resolve(args.recipe, {name: getattr(args, name) for name in NAMES + ("candidates",)})
    schedule = Schedule(args.epochs, args.tasks, args.validate_every, args.early_stopping, args.stop_after_rounds,
                        args.round_retries)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UsageError("-o %s is a file; give a run directory (to create, or to --resume)" % args.output)
    runner = MapReduceRunner(args.features, runner_args, args.work_dir or default_work_dir(args),
                             hadoop_bin=args.hadoop_bin, out=out)
    try:
        return Trainer(runner, args.output, candidates, schedule, resume=args.resume, out=out,
                       recipe=args.recipe or DEFAULT_RECIPE).run_all()
    except OSError as e:
        if not is_disk_full(e):
            raise
        # checkpoints are written whole or not at all (mr_tl.run_dir): the last good one is still there
        raise TrainingError("%s; no head was written and the last good checkpoint (if any) is kept: free some "
                            "space and continue with --resume" % disk_full_message(e).split(";")[0]) from None


def main(argv=None):
    from mr_tl.jobs.base import split_runner_args
    from mr_tl.jobs.train_round import MRTrainRound

    parser = build_parser()
    own, runner_args = split_runner_args(sys.argv[1:] if argv is None else list(argv), parser, MRTrainRound)
    args = parser.parse_args(own)
    runner_args = ["-r", args.runner] + runner_args
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        logging.getLogger("mrjob").setLevel(logging.ERROR)
    run_command(train, args, runner_args, out=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main(sys.argv[1:])
