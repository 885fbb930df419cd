"""python -m mr_tl.report RUN_DIR: loss and accuracy plots and the static page."""

import json
import os

import pytest

from mr_tl import plots, report
from mr_tl.run_dir import RunDir

PNG = b"\x89PNG\r\n\x1a\n"


def read_metrics(run_dir):
    return RunDir(str(run_dir)).read_metrics()


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


def test_report_writes_plots_and_page(trained_run, run_module, tmp_path, copy_tree):
    run = copy_tree(trained_run, tmp_path / "run")
    result = run_module("mr_tl.report", run)
    assert result.returncode == 0, result.stderr
    out = os.path.join(run, "report")
    assert result.stdout.strip() == "wrote %s" % os.path.join(out, "index.html")
    assert is_png(os.path.join(out, "loss.png")) and is_png(os.path.join(out, "accuracy.png"))
    with open(os.path.join(out, "index.html"), encoding="utf-8") as f:
        page = f.read()
    assert '<img src="loss.png"' in page and '<img src="accuracy.png"' in page
    metrics = read_metrics(run)
    assert "%d of %d rounds, iteration %d, last loss %.4f" % (len(metrics), 6, metrics[-1]["iteration"],
                                                               metrics[-1]["loss"]) in page
    assert "<h2>Configuration</h2>" in page and "block_momentum" in page


def test_loss_series_has_one_point_per_minibatch(trained_run):
    metrics = read_metrics(trained_run)
    xs, ys = plots.loss_series(metrics)
    n = sum(len(m["losses"]) for m in metrics)
    assert n == metrics[-1]["iteration"] == 30  # 2 workers, 3 epochs x 10 minibatches of 16
    assert len(xs) == len(ys) == n
    assert xs == list(range(1, n + 1))
    assert ys == [loss for m in metrics for loss in m["losses"]]


def test_loss_plot_draws_every_minibatch(trained_run, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    real_close = plt.close

    def keep(fig=None):
        figures.append(fig)
        real_close(fig)

    monkeypatch.setattr(plt, "close", keep)
    metrics = read_metrics(trained_run)
    plots.plot_loss(metrics, str(tmp_path / "loss.png"))
    (fig,) = figures
    raw, smoothed = fig.axes[0].lines
    n = sum(len(m["losses"]) for m in metrics)
    assert len(raw.get_xdata()) == len(smoothed.get_xdata()) == n
    assert list(raw.get_ydata()) == [loss for m in metrics for loss in m["losses"]]
    assert is_png(tmp_path / "loss.png")


def test_no_accuracy_plot_without_validation(synth, train_cli, tmp_path):
    run = tmp_path / "run"
    result = train_cli("-r", "inline", synth.path, "-o", run, "--workers", 2, "--epochs", 1,
                       "--averaging-frequency", "epoch", "--candidates", "none")   # candidates are validated
    assert result.code == 0, result.err
    page = report.write_report(str(run))
    out = os.path.dirname(page)
    assert is_png(os.path.join(out, "loss.png"))
    assert not os.path.exists(os.path.join(out, "accuracy.png"))
    with open(page, encoding="utf-8") as f:
        html = f.read()
    assert "accuracy.png" not in html and '<img src="loss.png"' in html


def test_report_includes_evaluation_results(trained_run, tmp_path, copy_tree):
    run = copy_tree(trained_run, tmp_path / "run")
    folder = os.path.join(run, "evaluation", "test")
    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump({"accuracy": 0.875, "split": "test", "examples": 100}, f)
    with open(report.write_report(run), encoding="utf-8") as f:
        html = f.read()
    assert "<h2>Evaluation: test split</h2>" in html and "0.8750" in html


def test_report_of_a_folder_that_is_not_a_run(run_module, tmp_path):
    result = run_module("mr_tl.report", tmp_path)
    assert result.returncode == 2
    assert "config.json is missing" in result.stderr and "Traceback" not in result.stderr


def test_smoothing_is_debiased():
    assert plots.smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    assert plots.smooth([1.0])[0] == pytest.approx(1.0)
