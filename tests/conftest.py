"""Shared fixtures of the mr_tl test suite.

Session-scoped fixtures are built once per test run and are shared by every
test: treat what they return as READ-ONLY (copy a model or a pack folder into
``tmp_path`` before changing anything in it).

Models (built through the real command line, as users do)
    ``tiny_vgg16``       path (str) of a tiny random-weights VGG16 with its sidecar:
                         Keras layer names, sizes from ``mr_tl.model.vgg16.TINY``
                         (input side ``TINY["input"]``, ``TINY["classes"]`` classes).
    ``tiny_vgg16_fc2``   path (str) of the same graph cut at ``fc2``
                         (``TINY["fc"]`` features).

Images
    ``demo_images``      folder (str) of a small ``mr_tl.demo_data`` set:
                         4 classes x 12 images, 48x48 (JPEG plus a few PNGs).
    ``packed_demo``      folder (str): ``mr_tl.pack`` of ``demo_images`` with the
                         default split (per class: 2 test, 2 val, 8 train).

Helpers
    ``run_module``       ``run_module("mr_tl.pack", arg, ..., cwd=None)`` runs
                         ``python -m MODULE ARGS`` with this interpreter and
                         returns the CompletedProcess (text stdout/stderr, no
                         check; assert on ``returncode`` yourself).
"""

import os
import subprocess
import sys

import pytest

PYTHON = sys.executable

DEMO_CLASSES = ("circle", "square", "triangle", "star")
DEMO_PER_CLASS = 12
DEMO_SIZE = 48


def _run_module(module, *args, cwd=None, env=None, timeout=600):
    return subprocess.run([PYTHON, "-m", module, *[str(a) for a in args]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def call_main(capsys):
    """``call_main(main, *args)``: a command's ``main(argv)`` in this process, as
    ``(exit code, stdout, stderr)``."""
    def call(main, *args):
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err
    return call


@pytest.fixture(scope="session")
def run_module():
    """Run ``python -m MODULE ARGS...`` (see the module docstring)."""
    return _run_module


def _check(result):
    assert result.returncode == 0, "command failed (%d):\n%s\n%s" % (result.returncode, result.stdout,
                                                                      result.stderr)
    return result


@pytest.fixture(scope="session")
def tiny_vgg16(tmp_path_factory):
    """The full tiny VGG16 graph (``.onnx``; its ``.json`` sidecar beside it)."""
    path = str(tmp_path_factory.mktemp("tiny_vgg16") / "vgg16-tiny.onnx")
    _check(_run_module("mr_tl.model", "build-vgg16", "--random-weights", "--tiny", "-o", path))
    return path


@pytest.fixture(scope="session")
def tiny_vgg16_fc2(tiny_vgg16, tmp_path_factory):
    """The tiny VGG16 cut after ``fc2`` (its ReLU included), with its sidecar."""
    path = str(tmp_path_factory.mktemp("tiny_vgg16_fc2") / "vgg16-tiny-fc2.onnx")
    _check(_run_module("mr_tl.model", "cut", tiny_vgg16, "--at", "fc2", "-o", path))
    return path


@pytest.fixture(scope="session")
def demo_images(tmp_path_factory):
    """A small labelled image folder in Caltech-256 layout (``000.circle/000_0000.jpg``)."""
    from mr_tl.demo_data import generate

    root = str(tmp_path_factory.mktemp("demo") / "images")
    generate(root, classes=DEMO_CLASSES, per_class=DEMO_PER_CLASS, seed=0, size=DEMO_SIZE)
    return root


@pytest.fixture(scope="session")
def packed_demo(demo_images, tmp_path_factory):
    """``mr_tl.pack`` of ``demo_images`` (default split, seed 42)."""
    from mr_tl.pack import pack

    out = str(tmp_path_factory.mktemp("packed_demo") / "packed")
    pack(demo_images, out)
    return out


def packed_images(packed_dir):
    """Every PackedImage of a pack folder, in shard order (a plain helper, not a fixture)."""
    from mr_tl.records import PackedImage

    images = []
    for name in sorted(os.listdir(packed_dir)):
        if name.endswith(".tsv"):
            with open(os.path.join(packed_dir, name), encoding="utf-8") as f:
                images += [PackedImage.from_line(line) for line in f]
    return images


@pytest.fixture(scope="session")
def read_packed():
    """``read_packed(folder)`` -> every PackedImage of a pack folder, in shard order."""
    return packed_images

