"""Safety: no unpickling or eval anywhere, names never become paths, models are hash-checked before use."""

import ast
import os
import pathlib
import shutil

import pytest

import mr_tl

PACKAGE = pathlib.Path(mr_tl.__file__).parent


def python_files():
    return sorted(PACKAGE.rglob("*.py"))


def calls_and_imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield "import", alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            yield "import", node.module or "", node.lineno
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            yield "call", name, node.lineno
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    yield "allow_pickle", ast.unparse(kw.value), node.lineno


def test_no_pickle_no_eval_no_exec():
    found = []
    for path in python_files():
        for kind, name, line in calls_and_imports(path):
            bad = ((kind == "import" and name.split(".")[0] in ("pickle", "cPickle", "dill", "cloudpickle", "shelve",
                                                                "marshal"))
                   or (kind == "call" and name in ("eval", "exec", "__import__"))
                   or kind == "allow_pickle")
            if bad:
                found.append("%s:%d %s %s" % (path.relative_to(PACKAGE.parent), line, kind, name))
    assert found == []


def test_numpy_loads_never_allow_pickle():
    """Every np.load in mr_tl passes allow_pickle=False explicitly."""
    missing = []
    for path in python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "np":
                if not any(kw.arg == "allow_pickle" for kw in node.keywords):
                    missing.append("%s:%d" % (path.relative_to(PACKAGE.parent), node.lineno))
    assert missing == []


def test_the_torch_checkpoint_reader_never_runs_the_pickle(tmp_path):
    """It interprets opcodes itself; a payload that would run code under pickle is refused, not run."""
    import pickle  # only to build the attack in the test

    from mr_tl.model.torch_checkpoint import CheckpointError, read_state_dict

    marker = tmp_path / "pwned"

    class Attack:
        def __reduce__(self):
            return (os.system, ("touch %s" % marker,))

    payload = tmp_path / "evil.pth"
    with open(payload, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001}, Attack()):
            pickle.dump(obj, f, protocol=2)
    with pytest.raises(CheckpointError):
        read_state_dict(str(payload))
    assert not marker.exists()


def test_names_never_become_paths(tmp_path, tiny_vgg16_fc2, run_module):
    """Ids and class names that look like paths stay data: nothing is written outside the outputs."""
    from PIL import Image

    images = tmp_path / "sandbox" / "images"
    for cls in ("..a", "%2e%2e", "b..\\..\\c"):
        for name in ("..%2f..%2fescape.png", "..\\..\\evil.png", "ok.png", "~root.png"):
            path = images / cls / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (len(cls) * 20, len(name) * 5, 90)).save(path)
    outside_before = sorted(str(p) for p in tmp_path.rglob("*"))
    sandbox = tmp_path / "sandbox"
    steps = [
        ("mr_tl.pack", images, sandbox / "packed", "--val", 1, "--test", 1),
        ("mr_tl.featurize", "-r", "inline", "--model", tiny_vgg16_fc2, sandbox / "packed", "-o", sandbox / "features"),
        ("mr_tl.train", "-r", "inline", sandbox / "features", "-o", sandbox / "run", "--workers", 1, "--epochs", 1),
        ("mr_tl.evaluate", "-r", "inline", "--run", sandbox / "run", sandbox / "features"),
        ("mr_tl.report", sandbox / "run"),
        ("mr_tl.export", "--trunk", tiny_vgg16_fc2, "--run", sandbox / "run", "-o", sandbox / "classifier.onnx"),
    ]
    for module, *args in steps:
        result = run_module(module, *args, cwd=str(sandbox))
        assert result.returncode == 0, (module, result.stderr[-2000:])
    new = sorted(set(str(p) for p in tmp_path.rglob("*")) - set(outside_before))
    allowed = [str(sandbox / d) for d in ("packed", "features", "run", "classifier.onnx", "classifier.json")]
    stray = [p for p in new if not any(p == a or p.startswith(a + os.sep) for a in allowed)]
    assert stray == []
    # and the names came through as data
    labels = (sandbox / "run" / "labels.json").read_text(encoding="utf-8")
    assert "b..\\\\..\\\\c" in labels and "%2e%2e" in labels


def test_models_are_hash_checked_before_use(tmp_path, tiny_vgg16_fc2, run_module):
    """A graph changed after its sidecar was written is refused by every command that loads one."""
    model = tmp_path / "m.onnx"
    shutil.copy(tiny_vgg16_fc2, model)
    shutil.copy(tiny_vgg16_fc2[:-5] + ".json", tmp_path / "m.json")
    with open(model, "ab") as f:
        f.write(b"\0")  # still loadable by onnx, but not the file the sidecar describes
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (20, 20)).save(image)
    for module, *args in [("mr_tl.predict", model, image),
                          ("mr_tl.featurize", "-r", "inline", "--model", model, image, "-o", tmp_path / "o"),
                          ("mr_tl.model", "quantize", model, "--calibration", tmp_path, "-o", tmp_path / "q.onnx")]:
        result = run_module(module, *args)
        assert result.returncode != 0, module
        assert "does not match its sidecar" in result.stderr, (module, result.stderr[-1500:])
