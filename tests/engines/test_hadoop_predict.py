"""The predict job and featurize --reuse on real Apache Hadoop (issue 18.3), checked against the single-image
CLI and the inline runner.

* STANDALONE (Hadoop's local job runner): ``predict --model`` over the packed
  images and ``predict --run`` over their features give the single-image
  CLI's predictions; ``featurize --reuse`` (a join step with a reducer, then
  the featurize map step) gives the records of a full run, byte for byte,
  and runs exactly the images that were not reused through the trunk.
* THE MINI CLUSTER (HDFS + YARN): the same, with every input and output on
  HDFS (the old features of --reuse too).

Model: the tiny VGG16 cut at fc2 of tests/conftest.py (fast on 2 cores); the
classifier is exported from a run whose head is seeded random weights (no
training needed to compare two ways of applying it).
"""
import json
import os
import time
from pathlib import Path

import hadoop_harness
import numpy as np
import pytest
from pipeline_checks import Cli

pytestmark = [pytest.mark.hadoop, pytest.mark.slow]

PYTHON = hadoop_harness.TASK_PYTHON
TOP = 3
# a command's limit (pipeline_checks.Cli's default is 600 s): one predict on the mini cluster took longer than
# that on a 2-core machine loaded by other work (load average 20)
JOB_TIMEOUT = 1500


def driver_env(tmp_dir):
    """This process's environment without Hadoop (the drivers only have -c mrjob.conf); TMPDIR ``tmp_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('HADOOP_')}
    env['PATH'] = os.pathsep.join(d for d in env.get('PATH', '').split(os.pathsep)
                                  if d and not os.access(os.path.join(d, 'hadoop'), os.X_OK))
    env.update(hadoop_harness.THREAD_ENV)
    env['TMPDIR'] = str(tmp_dir)
    return env


def records(folder, prefix=('P', 'R', 'F')):
    lines = []
    for part in sorted(Path(folder).glob('part-*')):
        lines += [line for line in part.read_text(encoding='utf-8').splitlines() if line.startswith(prefix)]
    return sorted(lines)


def predictions(folder):
    from mr_tl.records import PredictionRecord, parse_prediction_line

    out = {}
    for line in records(folder, ('P', 'R')):
        r = parse_prediction_line(line)
        out[r.id] = [(c, p) for c, p in r.top] if isinstance(r, PredictionRecord) else r.reason
    return out


def assert_same(got, expected, atol):
    assert sorted(got) == sorted(expected)
    for image_id, want in expected.items():
        if isinstance(want, str):
            assert got[image_id] == want, image_id
            continue
        assert [c for c, _ in got[image_id]] == [c for c, _ in want], image_id
        np.testing.assert_allclose([p for _, p in got[image_id]], [p for _, p in want], atol=atol, err_msg=image_id)


def packed_images(folder):
    from mr_tl.records import PackedImage

    out = []
    for shard in sorted(Path(folder).glob('*.tsv')):
        out += [PackedImage.from_line(line) for line in shard.read_text(encoding='utf-8').splitlines()]
    return out


@pytest.fixture(scope='module')
def case(tiny_vgg16_fc2, packed_demo, tmp_path_factory):
    """Features (inline), the train split's features alone (the old features of --reuse), a run with a seeded
    random head, its exported classifier, and the single-image CLI's predictions of every packed image."""
    from mr_tl import labels
    from mr_tl.records import load_npz
    from mr_tl.run_dir import RunDir, atomic_write

    root = tmp_path_factory.mktemp('hadoop-predict')
    cli = Cli(root, PYTHON, driver_env)
    features, old = root / 'features', root / 'features-train'
    cli('mr_tl.featurize', '-r', 'inline', '-q', '--model', tiny_vgg16_fc2, packed_demo, '-o', features)
    cli('mr_tl.featurize', '-r', 'inline', '-q', '--model', tiny_vgg16_fc2,
        os.path.join(packed_demo, 'train-00000.tsv'), '-o', old)
    run = RunDir(str(root / 'run'))
    classes = json.loads((features / '_labels.json').read_text())['classes']
    os.makedirs(run.path, exist_ok=True)
    atomic_write(run.file('labels.json'), labels.dumps(classes))
    g = np.random.default_rng(7)
    made_by = json.loads((features / '_summary.json').read_text())['model']
    run.write_head({'W': (g.standard_normal((32, len(classes))) * 0.02).astype(np.float32),
                    'b': np.zeros(len(classes), dtype=np.float32)}, {'features': {'made_by': made_by}})
    meta, _ = load_npz(run.file('head.npz'))
    assert meta['features']['made_by'] == made_by
    classifier = root / 'classifier.onnx'
    cli('mr_tl.export', '--trunk', tiny_vgg16_fc2, '--run', run.path, '-o', classifier)
    images = {}
    for image in packed_images(packed_demo):
        path = root / 'images' / image.id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image.data)
        images[str(path)] = image.id
    proc = cli('mr_tl.predict', classifier, *sorted(images), '--top', TOP, '--json')
    single = {}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        single[images[row['image']]] = [(t['class'], t['probability']) for t in row['top']]
    assert len(single) == 48
    assert any(0.05 < p < 0.95 for top in single.values() for _, p in top)    # not all 0 or 1
    train = sum(i.split == 'train' for i in packed_images(packed_demo))
    return {'root': root, 'features': features, 'old': old, 'run': run.path, 'classifier': classifier,
            'single': single, 'train': train, 'model': tiny_vgg16_fc2, 'packed': packed_demo}


def check_summary(folder, source):
    summary = json.loads((Path(folder) / '_summary.json').read_text())
    assert summary['input'] == {'images': 48, 'expected': 48, 'from': source}
    assert summary['records']['predicted'] == 48 and summary['records']['rejected'] == 0
    assert (Path(folder) / '_COMPLETE').exists()


def check_reused(reused, case):
    assert records(reused) == records(case['features'])          # byte for byte, as a full run
    summary = json.loads((Path(reused) / '_summary.json').read_text())
    assert summary['reuse']['reused'] == case['train'] and summary['reuse']['featurized'] == 48 - case['train']


def check_outputs(pred_model, pred_run, reused, case):
    assert_same(predictions(pred_model), case['single'], atol=1e-6)
    assert_same(predictions(pred_run), case['single'], atol=1e-5)
    check_summary(pred_model, 'packed images')
    check_summary(pred_run, 'feature records')
    check_reused(reused, case)


@pytest.mark.timeout(1800)
def test_standalone(case, hadoop_standalone):
    sa = hadoop_standalone
    work = sa.scratch_dir('predict')
    cli = Cli(work, PYTHON, driver_env, sa)
    conf = ['-r', 'hadoop', '-c', sa.mrjob_conf]
    out = {name: work / name for name in ('pred-model', 'pred-run', 'reused')}
    t0 = time.time()
    cli('mr_tl.predict', *conf, '--model', case['classifier'], case['packed'], '-o', sa.uri(out['pred-model']),
        '--top', TOP, timeout=JOB_TIMEOUT)
    cli('mr_tl.predict', *conf, '--run', case['run'], case['features'], '-o', sa.uri(out['pred-run']), '--top', TOP,
        timeout=JOB_TIMEOUT)
    proc = cli('mr_tl.featurize', *conf, '--model', case['model'], case['packed'], '-o', sa.uri(out['reused']),
               '--reuse', case['old'], timeout=JOB_TIMEOUT)
    hadoop_harness.TIMINGS['standalone: predict x2, featurize --reuse'] = round(time.time() - t0, 1)
    assert 'featurized %d, reused %d, rejected 0 of 48 images' % (48 - case['train'], case['train']) in proc.stderr
    check_outputs(out['pred-model'], out['pred-run'], out['reused'], case)


@pytest.fixture(scope='module')
def on_hdfs(case, hadoop_cluster):
    """The pack, the features and the old features (the train split's) put on HDFS; removed afterwards."""
    cluster = hadoop_cluster
    work = cluster.scratch_dir('predict')
    base = '/mr_tl-predict-%d' % os.getpid()
    hdfs = {name: 'hdfs://%s/%s' % (base, name)
            for name in ('packed', 'features', 'old', 'pred-model', 'pred-run', 'reused')}
    cluster.fs('-mkdir', '-p', base)
    cluster.fs('-put', case['packed'], hdfs['packed'])
    cluster.fs('-put', str(case['features']), hdfs['features'])
    cluster.fs('-put', str(case['old']), hdfs['old'])
    yield {'cluster': cluster, 'hdfs': hdfs, 'work': work, 'cli': Cli(work, PYTHON, driver_env, cluster),
           'conf': ['-r', 'hadoop', '-c', cluster.mrjob_conf]}
    cluster.fs('-rm', '-R', '-f', '-skipTrash', base)


def fetched(on_hdfs, name):
    """A local copy of an HDFS output folder."""
    local = on_hdfs['work'] / 'from-hdfs'
    local.mkdir(exist_ok=True)
    on_hdfs['cluster'].fs('-get', on_hdfs['hdfs'][name], str(local))
    return local / name


# Each mini-cluster job is a YARN application (container launches, heartbeats): on a loaded 2-core machine a
# command with its check job took up to 7 minutes, hence one test per command and a longer timeout.

@pytest.mark.timeout(1800)
def test_mini_cluster_predict_over_packed_images(case, on_hdfs):
    hdfs, t0 = on_hdfs['hdfs'], time.time()
    on_hdfs['cli']('mr_tl.predict', *on_hdfs['conf'], '--model', case['classifier'], hdfs['packed'],
                   '-o', hdfs['pred-model'], '--top', TOP, timeout=JOB_TIMEOUT)
    hadoop_harness.TIMINGS['cluster: predict --model'] = round(time.time() - t0, 1)
    out = fetched(on_hdfs, 'pred-model')
    assert_same(predictions(out), case['single'], atol=1e-6)
    check_summary(out, 'packed images')


@pytest.mark.timeout(1800)
def test_mini_cluster_predict_over_features(case, on_hdfs):
    hdfs, t0 = on_hdfs['hdfs'], time.time()
    on_hdfs['cli']('mr_tl.predict', *on_hdfs['conf'], '--run', case['run'], hdfs['features'],
                   '-o', hdfs['pred-run'], '--top', TOP, timeout=JOB_TIMEOUT)
    hadoop_harness.TIMINGS['cluster: predict --run'] = round(time.time() - t0, 1)
    out = fetched(on_hdfs, 'pred-run')
    assert_same(predictions(out), case['single'], atol=1e-5)
    check_summary(out, 'feature records')


@pytest.mark.timeout(1800)
def test_mini_cluster_featurize_reuse(case, on_hdfs):
    hdfs, t0 = on_hdfs['hdfs'], time.time()
    proc = on_hdfs['cli']('mr_tl.featurize', *on_hdfs['conf'], '--model', case['model'], hdfs['packed'],
                          '-o', hdfs['reused'], '--reuse', hdfs['old'], timeout=JOB_TIMEOUT)
    hadoop_harness.TIMINGS['cluster: featurize --reuse'] = round(time.time() - t0, 1)
    assert 'featurized %d, reused %d, rejected 0 of 48 images' % (48 - case['train'], case['train']) in proc.stderr
    check_reused(fetched(on_hdfs, 'reused'), case)
