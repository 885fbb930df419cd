"""The whole mr_tl pipeline on real Apache Hadoop, checked against mrjob's local runner.

featurize -> (Parquet) -> train -> evaluate -> export -> predict of a pack
(tests/conftest.py's packed_demo), run through the real command lines with
``-r hadoop -c MODE/mrjob.conf``:

* STANDALONE (Hadoop's local job runner, local file system): the same
  results as ``-r local``: the same feature records (within 1e-5; in
  practice byte-identical), byte-identical round checkpoints, equal
  evaluation metrics, equal predictions of the exported classifier.
* PSEUDO-DISTRIBUTED (the mini cluster: HDFS + YARN): the pack folder is put
  on HDFS; featurize reads and writes HDFS (its ``_summary.json`` /
  ``_labels.json`` land there and train/evaluate find them); Parquet is
  written to HDFS and read back; train keeps its worker files on HDFS
  (``--work-dir hdfs://``); evaluate reads the HDFS features.  Same results
  as ``-r local``.
* RETRY, on YARN: in the cluster run one map attempt of featurize and one of
  the first training round is SIGKILLed after it has read input (a
  ``python_bin`` wrapper, tests/engines/kill_once_python.py; nothing in
  mr_tl), Hadoop runs the task again, and the outputs are still the local
  runner's, bit for bit.  The job history server shows the failed attempt
  (exit 137) and the successful retry of the same task.  In standalone mode
  the local job runner does not retry a task: the job fails, and the train
  driver runs the round again (``--round-retries``), with the same result.

The drivers run with an environment that has no ``hadoop`` on PATH and no
HADOOP_* variables: ``-c mrjob.conf`` (train, evaluate, featurize) and
``--hadoop-bin`` (parquet) are all they need.  Every run uses its own TMPDIR,
which must be empty afterwards (no temp dirs left behind), and mrjob's HDFS
temp dirs must be gone.

Data: the demo images of tests/conftest.py (4 classes x 12, 48x48) and the
real EfficientNet-Lite0 trunk (models/, made by scripts/setup; the tiny
VGG16 if it is missing); 2 workers, 2 rounds.
"""
import getpass
import json
import os
import re
import time
from pathlib import Path

import hadoop_harness
import numpy as np
import pytest
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

pytestmark = pytest.mark.hadoop

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REAL_MODEL = REPO / 'models' / 'efficientnet-lite0-features.onnx'
KILL_ONCE = HERE / 'kill_once_python.py'
PYTHON = hadoop_harness.TASK_PYTHON

TRAIN_ARGS = ['--epochs', '2', '--workers', '2', '--validate-every', '1']


# --- helpers ---------------------------------------------------------------------

def driver_env(tmp_dir):
    """This process's environment without Hadoop: no HADOOP_* variables, no
    ``hadoop`` on PATH, so the drivers can only use what -c/--hadoop-bin say;
    TMPDIR is ``tmp_dir`` (checked for leftovers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('HADOOP_')}
    env['PATH'] = os.pathsep.join(
        d for d in env.get('PATH', '').split(os.pathsep)
        if d and not os.access(os.path.join(d, 'hadoop'), os.X_OK))
    env.update(hadoop_harness.THREAD_ENV)
    env['TMPDIR'] = str(tmp_dir)
    return env


def hadoop_cli(work_dir, mode=None):
    """A user's shell in ``work_dir`` without Hadoop on PATH (``driver_env``); ``mode``'s daemon logs on failure."""
    return Cli(work_dir, PYTHON, driver_env, mode)


def make_kill_once_python(path, marker, script):
    """A copy of kill_once_python.py that runs the task python and kills the
    first map attempt of job ``script`` (``featurize.py``, ``train_round.py``) that creates ``marker``."""
    text = KILL_ONCE.read_text()
    text = re.sub(r'^REAL_PYTHON = None.*$', 'REAL_PYTHON = %r' % PYTHON, text, count=1, flags=re.M)
    text = re.sub(r'^MARKER = None.*$', 'MARKER = %r' % str(marker), text, count=1, flags=re.M)
    text = re.sub(r'^SCRIPT = None.*$', 'SCRIPT = %r' % script, text, count=1, flags=re.M)
    path = Path(path)
    path.write_text('#!%s\n%s' % (PYTHON, text))
    path.chmod(0o755)
    return path


def job_ids(stderr):
    return re.findall(r'Running job: (job_(?:local)?\d+_\d+)', stderr)


def check_killed_and_retried(cluster, marker, stderr, job_id):
    """The killed attempt of job_id failed (exit 137) after reading input and
    the same task then succeeded, per the marker, mrjob's counters and the
    job history server."""
    killed = json.loads(Path(marker).read_text())
    attempt = killed['attempt']
    assert attempt and attempt.startswith('attempt_'), killed
    assert killed['alive_before_kill'] and killed['status'] == -9, killed
    assert killed['mapper_read_at_least'] > 0, killed       # it had read input
    assert '--mapper' in killed['argv']
    assert attempt.replace('attempt_', 'job_').rsplit('_', 3)[0] == job_id

    # Hadoop's own job counters, as the streaming client printed them
    assert re.search(r'Task Id : %s, Status : FAILED' % attempt, stderr), stderr[-3000:]
    assert re.search(r'Failed map tasks=1\b', stderr)

    job = cluster.job_history('jobs/' + job_id)['job']
    assert job['state'] == 'SUCCEEDED'
    # YARN may also start a speculative copy of the slow retried task and kill the loser: allowed,
    # the records are checked against the local runner's elsewhere
    assert job['failedMapAttempts'] == 1
    assert job['successfulMapAttempts'] == job['mapsTotal']
    task = 'task_' + attempt[len('attempt_'):].rsplit('_', 1)[0]
    attempts = cluster.job_history('jobs/%s/tasks/%s/attempts' % (job_id, task))
    states = {a['id']: a for a in attempts['taskAttempts']['taskAttempt']}
    assert states[attempt]['state'] == 'FAILED'
    assert 'subprocess failed with code 137' in states[attempt]['diagnostics']
    retried = [a for a_id, a in states.items() if a_id != attempt]
    assert sorted(a['state'] for a in retried if a['state'] != 'KILLED') == ['SUCCEEDED']
    return killed


MR_TL_JOBS = ('featurize.', 'scan.', 'partition.', 'train_round.', 'evaluate.')  # mrjob's temp dir names


def mrjob_hdfs_leftovers(cluster):
    tmp = '/user/%s/tmp/mrjob' % getpass.getuser()
    listing = cluster.fs('-ls', tmp, check=False).stdout
    return [line for line in listing.splitlines() if any('/' + job in line for job in MR_TL_JOBS)]


# --- the three pipelines ------------------------------------------------------------
#
# The cluster pipeline spends much of its time waiting (container launches,
# YARN heartbeats, polling): the local reference and the standalone pipeline
# run meanwhile, in a thread.

def run_reference(work, model, packed, images):
    """The pipeline with ``-r local``."""
    cli = hadoop_cli(work)
    features, run = work / 'features', work / 'run'
    cli('mr_tl.featurize', '-r', 'local', '--model', model, packed, '-o', features)
    cli('mr_tl.train', '-r', 'local', features, '-o', run, *TRAIN_ARGS)
    cli('mr_tl.evaluate', '-r', 'local', '--run', run, features, '--split', 'test')
    predictions = export_and_predict(cli, model, run, images)
    hadoop_harness.TIMINGS['pipeline e2e, -r local (reference)'] = round(sum(cli.seconds.values()), 1)
    return {'features': read_feature_dir(features)[0], 'features_dir': features, 'run': run,
            'predictions': predictions}


def run_standalone(sa, work, model, packed, images):
    cli = hadoop_cli(work, sa)
    conf = ['-r', 'hadoop', '-c', sa.mrjob_conf]
    features, run = work / 'features', work / 'run'
    t0 = time.time()
    # with -r hadoop, a path without a scheme is an HDFS path to mrjob: file://
    cli('mr_tl.featurize', *conf, '--model', model, packed, '-o', sa.uri(features))
    cli('mr_tl.train', *conf, features, '-o', run, *TRAIN_ARGS)
    cli('mr_tl.evaluate', *conf, '--run', run, features, '--split', 'test')
    predictions = export_and_predict(cli, model, run, images)
    hadoop_harness.TIMINGS['pipeline e2e, standalone'] = round(time.time() - t0, 1)

    # a map task killed in the local job runner: it is not retried (the job
    # fails); the train driver runs the round again (--round-retries)
    t0 = time.time()
    marker, killed_run = work / 'killed-train.json', work / 'run-killed'
    killer = make_kill_once_python(work / 'kill-once-train', marker, 'train_round.py')
    proc = cli('mr_tl.train', *conf, features, '-o', killed_run, *TRAIN_ARGS, '--stop-after-rounds', '1',
               '--python-bin', killer, '-v', step='train, a map task killed')
    hadoop_harness.TIMINGS['standalone: a round with a killed map task'] = round(time.time() - t0, 1)
    for step, seconds in cli.seconds.items():
        hadoop_harness.TIMINGS['  standalone: %s' % step] = round(seconds, 1)
    return {'features': features, 'run': run, 'predictions': predictions, 'cli': cli,
            'mrjob_tmp': Path(sa.mrjob_tmp_uri[len('file://'):]),
            'killed': {'marker': marker, 'run': killed_run, 'out': proc.stdout, 'log': proc.stderr}}


def run_cluster(cluster, work, model, packed_demo, images):
    cli = hadoop_cli(work, cluster)
    conf = ['-r', 'hadoop', '-c', cluster.mrjob_conf]
    base = '/mr_tl-e2e-%d' % os.getpid()
    packed, features = 'hdfs://%s/packed' % base, 'hdfs://%s/features' % base
    parquet, work_dir = 'hdfs://%s/features.parquet' % base, 'hdfs://%s/work' % base
    run = work / 'run'
    markers = {'featurize': work / 'killed-featurize.json', 'train': work / 'killed-train.json'}
    scripts = {'featurize': 'featurize.py', 'train': 'train_round.py'}
    killers = {k: make_kill_once_python(work / ('kill-once-%s' % k), m, scripts[k]) for k, m in markers.items()}
    t0 = time.time()

    cluster.fs('-mkdir', '-p', base)
    cluster.fs('-put', packed_demo, packed)
    t_put = time.time()
    proc = cli('mr_tl.featurize', *conf, '--model', model, packed, '-o', features,
               '--python-bin', killers['featurize'])
    featurize_log = proc.stderr
    cli('mr_tl.parquet', features, '-o', parquet, '--hadoop-bin', cluster.hadoop_bin)
    proc = cli('mr_tl.train', *conf, features, '-o', run, *TRAIN_ARGS, '--work-dir', work_dir,
               '--python-bin', killers['train'], '-v')
    train_log, train_out = proc.stderr, proc.stdout
    cli('mr_tl.evaluate', *conf, '--run', run, features, '--split', 'test')
    # the Parquet dataset on HDFS, read inside the tasks (one map task per Parquet file)
    parquet_run = work / 'run-parquet'
    cli('mr_tl.train', *conf, parquet, '-o', parquet_run, *TRAIN_ARGS, '--work-dir', work_dir + '-parquet',
        step='train (Parquet input)')
    cli('mr_tl.evaluate', *conf, '--run', parquet_run, parquet, '--split', 'test', step='evaluate (Parquet input)')
    predictions = export_and_predict(cli, model, run, images)
    hadoop_harness.TIMINGS['pipeline e2e, mini cluster (2 killed attempts)'] = round(time.time() - t0, 1)
    hadoop_harness.TIMINGS['  cluster: hadoop fs -put pack'] = round(t_put - t0, 1)
    for step, seconds in cli.seconds.items():
        hadoop_harness.TIMINGS['  cluster: %s' % step] = round(seconds, 1)

    # what is on HDFS now, fetched once for the tests below
    local = work / 'from-hdfs'
    local.mkdir()
    cluster.fs('-get', features, parquet, work_dir, str(local))
    hdfs_listing = cluster.fs('-ls', '-R', base).stdout
    leftovers = mrjob_hdfs_leftovers(cluster)
    cluster.fs('-rm', '-R', '-f', '-skipTrash', base)
    return {'cluster': cluster, 'features': local / 'features', 'parquet': local / 'features.parquet',
            'work_dir': local / 'work', 'hdfs_listing': hdfs_listing, 'hdfs_leftovers': leftovers,
            'run': run, 'predictions': predictions, 'cli': cli, 'markers': markers,
            'featurize_log': featurize_log, 'train_log': train_log, 'train_out': train_out,
            'parquet_run': parquet_run, 'base': base}


# what a pipeline may raise: errors, and pytest's skip/fail (which are not Exceptions)
OUTCOMES = (Exception, pytest.skip.Exception, pytest.fail.Exception)


def _selected(request, fixture):
    return any(fixture in getattr(item, 'fixturenames', ()) for item in request.session.items)


@pytest.fixture(scope='module')
def model(request):
    if REAL_MODEL.exists():
        return str(REAL_MODEL)
    return request.getfixturevalue('tiny_vgg16_fc2')


@pytest.fixture(scope='module')
def pipelines(request, hadoop_home, model, packed_demo, demo_images, tmp_path_factory):
    """Runs the pipelines the selected tests need: {name: result or the exception it raised}.
    The cluster (started here, if needed) runs in this thread, the rest in another."""
    from concurrent.futures import ThreadPoolExecutor

    images = predict_images(demo_images)
    want_cluster = _selected(request, 'cluster_pipeline')
    want_standalone = _selected(request, 'standalone_pipeline')
    standalone = request.getfixturevalue('hadoop_standalone') if want_standalone else None
    works = {name: tmp_path_factory.mktemp('pipeline-' + name) for name in ('local', 'standalone', 'cluster')}
    results = {}

    def background():
        for name, fn in (('reference', lambda: run_reference(works['local'], model, packed_demo, images)),
                         ('standalone', lambda: run_standalone(standalone, works['standalone'], model,
                                                               packed_demo, images) if standalone else None)):
            try:
                results[name] = fn()
            except OUTCOMES as e:  # re-raised by the fixtures of the tests that need it
                results[name] = e

    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(background)
        try:
            if want_cluster:
                cluster = request.getfixturevalue('hadoop_cluster')
                results['cluster'] = run_cluster(cluster, works['cluster'], model, packed_demo, images)
        except OUTCOMES as e:
            results['cluster'] = e
        done.result()
    return results


def _result(pipelines, name):
    result = pipelines.get(name)
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.fixture(scope='module')
def reference(pipelines):
    return _result(pipelines, 'reference')


@pytest.fixture(scope='module')
def standalone_pipeline(pipelines, reference):
    return _result(pipelines, 'standalone')


@pytest.fixture(scope='module')
def cluster_pipeline(pipelines, reference):
    return _result(pipelines, 'cluster')


# --- standalone ---------------------------------------------------------------------------

def test_standalone_features_equal_the_local_runners(standalone_pipeline, reference):
    features = standalone_pipeline['features']
    assert_same_features(read_feature_dir(features)[0], reference['features'])
    ref = reference['features_dir']
    assert summary_counts((features / '_summary.json').read_text()) == \
        summary_counts((ref / '_summary.json').read_text())
    assert (features / '_labels.json').read_text() == (ref / '_labels.json').read_text()
    assert (features / '_SUCCESS').exists()  # written by Hadoop's output committer
    assert (features / '_COMPLETE').exists()  # written by featurize once its checks passed


def test_standalone_checkpoints_are_byte_identical(standalone_pipeline, reference):
    run, ref = standalone_pipeline['run'], reference['run']
    got = checkpoint_files(run)
    assert sorted(got) == ['round-%06d.npz%s' % (r, ext) for r in range(3) for ext in ('', '.sha256')]
    assert got == checkpoint_files(ref)
    assert metrics_without_timings(run) == metrics_without_timings(ref)
    head, ref_head = head_of(run), head_of(ref)
    assert all(np.array_equal(head[k], ref_head[k]) for k in ('W', 'b'))
    assert json.loads((run / 'config.json').read_text())['runner'] == 'hadoop'


def test_standalone_evaluation_and_predictions_equal(standalone_pipeline, reference):
    got = evaluation_files(standalone_pipeline['run'])
    assert got == evaluation_files(reference['run'])
    records = reference['features']
    test_images = [i for i, (kind, _, split, _) in records.items() if kind == 'F' and split == 'test']
    assert json.loads(got['metrics.json'])['examples'] == len(test_images) > 0
    assert standalone_pipeline['predictions'] == reference['predictions']
    assert len(reference['predictions']) == 4


def test_standalone_does_not_retry_a_killed_task_the_driver_reruns_the_round(standalone_pipeline, reference):
    """Hadoop's local job runner has no task attempts to spare
    (mapreduce.map.maxattempts does not apply): the killed map task fails the
    job.  mr_tl.train then runs the round again as a new job, with the same
    result as the undisturbed run."""
    killed = standalone_pipeline['killed']
    attempt = json.loads(killed['marker'].read_text())['attempt']
    assert re.match(r'attempt_local\d+_0001_m_\d+_0$', attempt)  # the local job runner's first attempt
    job = attempt.replace('attempt_', 'job_').rsplit('_', 3)[0]
    log = killed['log']
    assert 'subprocess failed with code 137' in log
    assert re.search(r'Job %s failed with state FAILED' % job, log)
    # the scan, the partition, the round that failed, the same round again
    assert len(job_ids(log)) == 4 and job_ids(log)[2] == job
    assert re.search(r'^round 1 failed \(.*\); running it again \(attempt 2 of 3\)$', killed['out'], re.M), \
        killed['out']
    got = checkpoint_files(killed['run'])
    expected = checkpoint_files(reference['run'])
    assert sorted(got) == ['round-%06d.npz%s' % (r, ext) for r in range(2) for ext in ('', '.sha256')]
    assert got == {name: expected[name] for name in got}


def test_standalone_leaves_no_temp_dirs(standalone_pipeline):
    assert standalone_pipeline['cli'].leftovers() == []
    tmp = standalone_pipeline['mrjob_tmp']  # mrjob's hadoop_tmp_dir (file://) of the mode
    assert [n for n in (os.listdir(tmp) if tmp.exists() else []) if n.startswith(MR_TL_JOBS)] == []


# --- pseudo-distributed: the mini cluster (with one killed map attempt per job kind) ----

def test_cluster_features_on_hdfs_equal_the_local_runners(cluster_pipeline, reference):
    features = cluster_pipeline['features']
    assert_same_features(read_feature_dir(features)[0], reference['features'])
    # the side files landed on HDFS beside the part files
    listing = cluster_pipeline['hdfs_listing']
    for name in ('_SUCCESS', '_summary.json', '_labels.json', '_COMPLETE', 'part-00000'):
        assert re.search(r'%s/features/%s$' % (re.escape(cluster_pipeline['base']), name), listing, re.M), name
    ref = reference['features_dir']
    assert summary_counts((features / '_summary.json').read_text()) == \
        summary_counts((ref / '_summary.json').read_text())
    assert (features / '_labels.json').read_text() == (ref / '_labels.json').read_text()


def test_cluster_parquet_on_hdfs_trains_the_same_head(cluster_pipeline, reference):
    """mr_tl.parquet wrote a Parquet dataset to HDFS (``hadoop fs -put``: pyarrow's own HDFS
    client would need libhdfs.so); train and evaluate read it inside their YARN tasks and give the
    text features' checkpoints and evaluation, byte for byte; pandas reads the folder as it is."""
    import pandas as pd

    parquet = cluster_pipeline['parquet']
    assert sorted(n for n in os.listdir(parquet) if not n.startswith('.')) == [
        '_COMPLETE', '_labels.json', '_summary.json'] + sorted(n for n in os.listdir(parquet) if n.endswith('.parquet'))
    frame = pd.read_parquet(str(parquet))
    ref = {k: v for k, v in reference['features'].items() if v[0] == 'F'}
    as_records = {row.id: ('F', int(row.label), row.split, np.asarray(row.features, dtype=np.float32))
                  for row in frame.itertuples()}
    assert_same_features(as_records, ref)
    run, ref_run = cluster_pipeline['parquet_run'], reference['run']
    assert checkpoint_files(run) == checkpoint_files(ref_run)
    assert evaluation_files(run) == evaluation_files(ref_run)


def test_cluster_checkpoints_are_byte_identical_after_a_killed_task(cluster_pipeline, reference):
    run, ref = cluster_pipeline['run'], reference['run']
    got = checkpoint_files(run)
    assert sorted(got) == ['round-%06d.npz%s' % (r, ext) for r in range(3) for ext in ('', '.sha256')]
    assert got == checkpoint_files(ref)
    assert metrics_without_timings(run) == metrics_without_timings(ref)
    head, ref_head = head_of(run), head_of(ref)
    assert all(np.array_equal(head[k], ref_head[k]) for k in ('W', 'b'))
    config = json.loads((run / 'config.json').read_text())
    assert config['features']['inputs'] == ['hdfs://%s/features' % cluster_pipeline['base']]
    # the partition job wrote the worker files on HDFS (--work-dir): one gzip file per round task
    workers = cluster_pipeline['work_dir'] / 'workers'
    assert sorted(n for n in os.listdir(workers) if not n.startswith('.')) == [
        '_SUCCESS', '_partition.json', 'part-00000.gz', 'part-00001.gz']
    assert json.loads((workers / '_partition.json').read_text())['files'] == ['part-00000.gz', 'part-00001.gz']
    assert not (run / 'data').exists()


def test_cluster_evaluation_and_predictions_equal(cluster_pipeline, reference):
    assert evaluation_files(cluster_pipeline['run']) == evaluation_files(reference['run'])
    assert cluster_pipeline['predictions'] == reference['predictions']


def test_cluster_retried_the_killed_featurize_attempt(cluster_pipeline):
    log = cluster_pipeline['featurize_log']
    jobs = job_ids(log)
    assert len(jobs) == 2   # featurize, then the scan of its output
    check_killed_and_retried(cluster_pipeline['cluster'], cluster_pipeline['markers']['featurize'], log, jobs[0])


def test_cluster_retried_the_killed_training_attempt(cluster_pipeline):
    log = cluster_pipeline['train_log']
    jobs = job_ids(log)
    # the scan, the partition, one job per round (no round ran twice), the last validation
    assert len(jobs) == 5
    check_killed_and_retried(cluster_pipeline['cluster'], cluster_pipeline['markers']['train'], log, jobs[2])
    # Hadoop retried the task; the driver did not have to run the round again
    assert 'running it again' not in cluster_pipeline['train_out']


def test_cluster_leaves_no_temp_dirs(cluster_pipeline):
    assert cluster_pipeline['cli'].leftovers() == []
    assert cluster_pipeline['hdfs_leftovers'] == []
