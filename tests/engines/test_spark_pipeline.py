"""The whole mr_tl pipeline on a real Spark cluster (mrjob's ``-r spark``), checked against ``-r local``.

pack -> featurize -> train -> evaluate -> export -> predict, run through the
real command lines.  The cluster is pyspark's own standalone master and one
worker (2 cores) on 127.0.0.1, separate JVMs started once per session
(tests/spark_harness.py); every job, and every training round, is one
Spark application whose tasks run in an executor JVM's Python workers.

Checked against the same pipeline with ``-r local``:

* featurize: the same records (vectors within 1e-5; in practice
  byte-identical), the same ``_summary.json`` counts (read from the Spark
  harness's emulated counters and from the output), ``_labels.json``;
* train, 2 workers, 4 rounds (2 epochs x 2 minibatches of 8, so rounds
  start mid-epoch too): byte-identical checkpoints, metrics, head;
* train, 4 workers in 2 map tasks: on Spark the combiner runs inside
  ``combineByKey`` (within and across partitions), not once per map task as
  on Hadoop; the fixed averaging tree still gives the local runner's bits;
* evaluate: identical metrics.json, per_class.csv, confusion.csv;
* export + predict (no runner): identical predictions.

Also: each job ran as FINISHED applications of the standalone master (one
per job, one per round) with executors on the worker; a probe job (mr_spark_probe.py)
shows the tasks ran in the worker's executor directories, with the venv's
Python, the shipped mr_tl zip, and 1 thread each (MR_TL_THREADS and the BLAS
variables reach the executors through mrjob's cmdenv -> spark.executorEnv);
nothing is left in TMPDIR or in mrjob's temp dir.

The drivers pass the cluster as ``-c mrjob.conf`` (featurize, evaluate, the
second training) and as command-line switches (``--spark-master``,
``--spark-tmp-dir``, ``-D spark.x=y``, ... : the first training, through
mr_tl.train's pass-through of mrjob options).

Data: the tiny VGG16 cut at fc2 (32 features) and the demo images of
tests/conftest.py (4 classes x 12, 48x48).
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import spark_harness
from conftest_spark import spark_cluster  # noqa: F401  (a fixture)
from pipeline_checks import (
    Cli,
    assert_same_features,
    checkpoint_files,
    evaluation_files,
    export_and_predict,
    head_of,
    metrics_without_timings,
    predict_images,
    read_feature_dir,
    summary_counts,
)

pytestmark = [pytest.mark.spark, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
PROBE = HERE / 'mr_spark_probe.py'
PYTHON = spark_harness.TASK_PYTHON

# ~16 examples per worker: 2 minibatches of 8 per epoch, one per round
TRAIN_ARGS = ['--workers', '2', '--epochs', '2', '--batch-size', '8', '--averaging-frequency', '1',
              '--validate-every', '1']
# 4 workers in 2 map tasks: the combiner sums sibling workers
COMBINER_TRAIN_ARGS = ['--workers', '4', '--tasks', '2', '--epochs', '1']


def rounds_of(run):
    """Rounds of a run, from its config (worker sizes follow a hash of each id)."""
    return json.loads((Path(run) / 'config.json').read_text())['rounds']


# --- helpers ---------------------------------------------------------------------

def spark_cli(work_dir, cluster=None):
    """A user's shell in ``work_dir``: the cluster's environment (or this one) with its own TMPDIR."""
    def env(tmp_dir):
        env = cluster.env() if cluster else dict(os.environ)
        env['TMPDIR'] = str(tmp_dir)
        return env
    return Cli(work_dir, PYTHON, env, cluster)


def expected_checkpoints(rounds):
    return ['round-%06d.npz%s' % (r, ext) for r in range(rounds + 1) for ext in ('', '.sha256')]


# --- the two pipelines ---------------------------------------------------------------

def run_pipeline(work, model, packed, images, cluster=None):
    """featurize -> train (twice) -> evaluate -> export -> predict, with ``-r local`` or on ``cluster``."""
    cli = spark_cli(work, cluster)
    features, run, run4 = work / 'features', work / 'run', work / 'run-4-workers'
    if cluster is None:
        conf = switches = ['-r', 'local']
    else:
        mrjob_tmp = work / 'mrjob-tmp'
        conf = ['-r', 'spark', '-c', cluster.write_mrjob_conf(work / 'mrjob.conf', mrjob_tmp)]
        switches = ['-r', 'spark'] + cluster.mrjob_args(mrjob_tmp)
    apps_before = len(cluster.applications()) if cluster else 0
    t0 = time.time()
    cli('mr_tl.featurize', *conf, '--model', model, packed, '-o', features)
    train_out = cli('mr_tl.train', *switches, features, '-o', run, *TRAIN_ARGS).stdout
    cli('mr_tl.train', *conf, features, '-o', run4, *COMBINER_TRAIN_ARGS, step='mr_tl.train (4 workers, 2 tasks)')
    cli('mr_tl.evaluate', *conf, '--run', run, features, '--split', 'test')
    predictions = export_and_predict(cli, model, run, images)
    total = round(time.time() - t0, 1)
    result = {'features': features, 'run': run, 'run4': run4, 'predictions': predictions, 'cli': cli,
              'train_out': train_out, 'seconds': total}
    if cluster is None:
        spark_harness.TIMINGS['pipeline e2e, -r local (reference)'] = total
        return result
    spark_harness.TIMINGS['pipeline e2e, -r spark'] = total
    for step, seconds in cli.seconds.items():
        spark_harness.TIMINGS['  spark: %s' % step] = seconds
    result['apps'] = cluster.applications()[apps_before:]
    result['mrjob_tmp'] = mrjob_tmp
    return result


# what a pipeline may raise: errors, and pytest's skip/fail (which are not Exceptions)
OUTCOMES = (Exception, pytest.skip.Exception, pytest.fail.Exception)


@pytest.fixture(scope='module')
def pipelines(request, tmp_path_factory):
    """{'local': result, 'spark': result}; a pipeline's exception is re-raised by the tests that need it.
    The local reference runs in another thread while the cluster starts and Spark's JVMs wait."""
    from concurrent.futures import ThreadPoolExecutor

    spark_harness.check_available(skip=True)  # skip before building anything
    tiny_vgg16_fc2, packed_demo = request.getfixturevalue('tiny_vgg16_fc2'), request.getfixturevalue('packed_demo')
    images = predict_images(request.getfixturevalue('demo_images'))
    results = {}

    def reference():
        try:
            results['local'] = run_pipeline(tmp_path_factory.mktemp('spark-ref-local'), tiny_vgg16_fc2,
                                            packed_demo, images)
        except OUTCOMES as e:
            results['local'] = e

    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(reference)
        try:
            cluster = request.getfixturevalue('spark_cluster')
            results['spark'] = run_pipeline(tmp_path_factory.mktemp('spark-pipeline'), tiny_vgg16_fc2,
                                            packed_demo, images, cluster)
        except OUTCOMES as e:
            results['spark'] = e
        done.result()
    return results


def _result(pipelines, name):
    result = pipelines[name]
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.fixture(scope='module')
def reference(pipelines):
    return _result(pipelines, 'local')


@pytest.fixture(scope='module')
def spark(pipelines, reference):
    return _result(pipelines, 'spark')


# --- the tests ---------------------------------------------------------------------------

def test_features_equal_the_local_runners(spark, reference):
    got, got_lines = read_feature_dir(spark['features'])
    expected, expected_lines = read_feature_dir(reference['features'])
    worst = assert_same_features(got, expected)
    spark_harness.TIMINGS['  featurize: largest |spark - local| (x1e-9)'] = round(worst * 1e9, 3)
    assert got_lines == expected_lines  # byte-identical records (the same batches of 8 per map task)
    assert summary_counts((spark['features'] / '_summary.json').read_text()) == \
        summary_counts((reference['features'] / '_summary.json').read_text())
    counts = summary_counts((spark['features'] / '_summary.json').read_text())
    assert sum(counts['featurized'].values()) == 48 and counts['rejected'] == 0
    assert (spark['features'] / '_labels.json').read_text() == (reference['features'] / '_labels.json').read_text()
    assert (spark['features'] / '_SUCCESS').exists()  # Spark's output committer


def test_checkpoints_are_byte_identical(spark, reference):
    run, ref = spark['run'], reference['run']
    got = checkpoint_files(run)
    assert sorted(got) == expected_checkpoints(rounds_of(ref)) and rounds_of(ref) >= 3
    assert got == checkpoint_files(ref)
    assert metrics_without_timings(run) == metrics_without_timings(ref)
    head, ref_head = head_of(run), head_of(ref)
    assert all(np.array_equal(head[k], ref_head[k]) for k in ('W', 'b'))
    assert json.loads((run / 'config.json').read_text())['runner'] == 'spark'
    assert spark['train_out'].count('round ') >= rounds_of(ref)


def test_combiner_rounds_are_byte_identical(spark, reference):
    """4 workers in 2 tasks: Spark's combineByKey merges the workers' contributions
    pairwise, within and across partitions; the result is still the local runner's."""
    run, ref = spark['run4'], reference['run4']
    got = checkpoint_files(run)
    assert sorted(got) == expected_checkpoints(rounds_of(ref))
    assert got == checkpoint_files(ref)
    config = json.loads((run / 'config.json').read_text())
    assert config['tasks'] == 2 and config['training']['workers'] == 4
    # the partition job's reducers wrote the worker files: gzip, one per round task
    workers = run / 'data' / 'workers'
    names = json.loads((workers / '_partition.json').read_text())['files']
    assert names and all(n.startswith('part-') and n.endswith('.gz') for n in names)
    assert set(names) <= set(os.listdir(workers))


def test_evaluation_and_predictions_equal(spark, reference):
    got = evaluation_files(spark['run'])
    assert got == evaluation_files(reference['run'])
    records = read_feature_dir(reference['features'])[0]
    test_images = [i for i, (kind, _, split, _) in records.items() if kind == 'F' and split == 'test']
    assert json.loads(got['metrics.json'])['examples'] == len(test_images) > 0
    assert spark['predictions'] == reference['predictions']
    assert len(reference['predictions']) == 4


def test_every_job_ran_as_applications_of_the_cluster(spark, spark_cluster):  # noqa: F811
    apps = spark['apps']
    # featurize and the scan of its output; per training: the scan, the partition, one application per
    # round, and the last validation (the run validated every round; the other, of the default recipe's
    # several candidates, validates after its last round to choose one); evaluate
    rounds = rounds_of(spark['run']), rounds_of(spark['run4'])
    assert len(apps) == 2 + (2 + rounds[0] + 1) + (2 + rounds[1] + 1) + 1, apps
    assert [a['state'] for a in apps] == ['FINISHED'] * len(apps)
    for app in apps:
        assert app['cores'] == spark_cluster.cores
        assert app['memoryperexecutor'] == int(spark_cluster.executor_memory.rstrip('m'))  # MiB
        # the worker started an executor for it: its working dir, with its logs
        dirs = spark_cluster.executor_dirs(app['id'])
        assert dirs and all((d / 'stderr').exists() for d in dirs), app['id']


def test_leaves_no_temp_files(spark):
    assert spark['cli'].leftovers() == []
    # spark_tmp_dir = local_tmp_dir: mrjob removed each job's dir, counters and output included
    assert os.listdir(spark['mrjob_tmp']) == []


def test_tasks_run_in_executors_with_the_venv_python_and_one_thread(spark_cluster, tmp_path):  # noqa: F811
    """A probe job: where and how map tasks run on the cluster."""
    inputs = []
    for i in range(2):
        path = tmp_path / ('input-%d.txt' % i)
        path.write_text(''.join('line %d\n' % n for n in range(5 + i)))
        inputs.append(path)
    cli = spark_cli(tmp_path / 'probe', spark_cluster)
    conf = spark_cluster.write_mrjob_conf(tmp_path / 'mrjob.conf', tmp_path / 'mrjob-tmp')
    out = tmp_path / 'probe-out'
    cli('probe', '-r', 'spark', '-c', conf, *inputs, '-o', out, script=PROBE)
    spark_harness.TIMINGS['  spark: probe job'] = cli.seconds['probe']
    tasks = [json.loads(line) for p in sorted(out.glob('part-*')) for line in p.read_text().splitlines() if line]
    assert sum(t['lines'] for t in tasks) == 11
    assert len(tasks) >= 2  # one per input file at least
    worker_dir = str(spark_cluster.worker_dir)
    for t in tasks:
        # an executor's working dir: WORKER_DIR/app-.../EXECUTOR_ID; not this process, not the driver
        assert t['cwd'].startswith(worker_dir + os.sep + 'app-'), t
        assert t['pid'] != os.getpid()
        assert os.path.realpath(t['executable']) == os.path.realpath(PYTHON) or t['prefix'] == sys.prefix, t
        assert t['env']['PYSPARK_PYTHON'] == PYTHON
        assert t['env']['MR_TL_THREADS'] == '1', t
        assert all(t['env'][k] == '1' for k in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')), t
        if t['blas_threads'] is not None:
            assert set(t['blas_threads'].values()) <= {1}, t
        # the package came with the job (mrjob's py_files), not from the editable install
        assert '.zip' in t['mr_tl_file'] and t['mr_tl_file'].endswith(os.path.join('mr_tl', '__init__.py')), t
        assert t['module'] != '__main__'  # mrjob's Spark harness imports the job script as a module
    assert cli.leftovers() == []
