"""What the Hadoop and Spark pipeline tests compare with the local runner's run.

Both suites run featurize -> train -> evaluate -> export -> predict like a
user (``Cli``) on a real engine and on mrjob's local runner, then compare the
outputs read back with these helpers.
"""
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

# featurize on another engine runs the same graph on the same bytes; only
# onnxruntime's kernels choice may differ between processes
FEATURE_TOLERANCE = 1e-5


class Cli:
    """Runs ``PYTHON -m mr_tl.X ...`` like a user, in one scratch dir with its
    own TMPDIR (checked for leftovers), and keeps the time each step took.

    ``env(tmp_dir)`` gives the environment of every command; ``engine``, when
    given, adds its ``failure_details()`` (daemon logs) to a failure.
    """

    def __init__(self, work_dir, python, env, engine=None):
        self.work = Path(work_dir)
        self.tmp = self.work / 'TMPDIR'
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.make_env = env
        self.engine = engine
        self.seconds = {}

    def __call__(self, module, *args, step=None, script=None, timeout=600):
        t0 = time.time()
        cmd = [self.python] + ([str(script)] if script else ['-m', module]) + [str(a) for a in args]
        proc = subprocess.run(cmd, cwd=str(self.work), env=self.make_env(self.tmp), capture_output=True,
                              text=True, timeout=timeout)
        seconds = round(time.time() - t0, 1)
        step = step or module
        self.seconds[step] = round(self.seconds.get(step, 0) + seconds, 1)
        if proc.returncode != 0:
            raise AssertionError('%s %s failed (%d) after %.0fs:\n%s\n%s%s' % (
                module, ' '.join(map(str, args)), proc.returncode, seconds, proc.stdout[-3000:],
                proc.stderr[-12000:], self.engine.failure_details() if self.engine else ''))
        return proc

    def leftovers(self):
        # .ses: onnxruntime's telemetry session id file, not a temp dir of ours
        return sorted(n for n in os.listdir(self.tmp) if n != '.ses')


def read_feature_dir(folder):
    """{id: (kind, label, split, vector or reason)} and the sorted lines of a featurize output folder."""
    from mr_tl.records import FeatureRecord, parse_feature_line

    records, lines = {}, []
    for part in sorted(Path(folder).glob('part-*')):
        for line in part.read_text(encoding='utf-8').splitlines():
            if not line:
                continue
            lines.append(line)
            r = parse_feature_line(line)
            assert r.id not in records, 'duplicate record %s' % r.id
            if isinstance(r, FeatureRecord):
                records[r.id] = ('F', r.label, r.split, r.features)
            else:
                records[r.id] = ('R', r.label, r.split, r.reason)
    return records, sorted(lines)


def assert_same_features(got, expected):
    """Same images, labels, splits; vectors within FEATURE_TOLERANCE. Returns the largest difference."""
    assert sorted(got) == sorted(expected)
    worst = 0.0
    for image_id, (kind, label, split, value) in expected.items():
        g = got[image_id]
        assert g[:3] == (kind, label, split), image_id
        if kind == 'F':
            assert g[3].dtype == value.dtype and g[3].shape == value.shape
            worst = max(worst, float(np.max(np.abs(g[3] - value))))
        else:
            assert g[3] == value
    assert worst <= FEATURE_TOLERANCE, 'features differ by up to %g' % worst
    return worst


def summary_counts(summary_json):
    """The counts of a featurize ``_summary.json`` (its text), without timings, paths and the records' digest
    (vectors may differ in their last bits between engines, FEATURE_TOLERANCE)."""
    s = json.loads(summary_json)
    return {'input': s['input'], 'featurized': s['records']['featurized'], 'rejected': s['records']['rejected'],
            'reasons': s['reasons'], 'rejected_images': s['rejected_images'], 'model': s['model'],
            'pack': s['pack']}


def checkpoint_files(run_dir):
    folder = Path(run_dir) / 'checkpoints'
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def metrics_without_timings(run_dir):
    lines = (Path(run_dir) / 'metrics.jsonl').read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != 'seconds'} for line in lines]


def head_of(run_dir):
    with np.load(Path(run_dir) / 'head.npz') as z:
        return {k: z[k] for k in ('W', 'b')}


def evaluation_files(run_dir, split='test'):
    folder = Path(run_dir) / 'evaluation' / split
    return {name: (folder / name).read_bytes() for name in ('metrics.json', 'per_class.csv', 'confusion.csv')}


def predict_images(demo_images, n_per_class=1):
    images = []
    for class_dir in sorted(Path(demo_images).iterdir()):
        images += sorted(class_dir.iterdir())[:n_per_class]
    return images


def export_and_predict(cli, model, run_dir, images):
    out = Path(run_dir) / 'classifier.onnx'
    cli('mr_tl.export', '--trunk', model, '--run', run_dir, '-o', out, step='export')
    proc = cli('mr_tl.predict', out, *images, '--json', '--top', '4', step='predict')
    return [json.loads(line) for line in proc.stdout.splitlines()]
