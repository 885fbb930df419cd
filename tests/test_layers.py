"""The layers hold: the core imports nothing of mrjob, and no module imports itself back (no cycles).

The *core* is everything that knows nothing of MapReduce: model graphs,
image decoding, records, the head, averaging, the training loop and round
arithmetic, metrics, feature sets.  The *adapters* (mr_tl/jobs/, the job
modules featurize and evaluate, storage, the command that drives jobs) may
import mrjob.  Imports are read from the source (``ast``), including
imports inside functions.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mr_tl")

# modules that may import mrjob (directly or through another such module)
# (the "store" modules reach files through mrjob's filesystems: local, HDFS, S3 ...)
ADAPTERS = {"mr_tl.jobs", "mr_tl.featurize", "mr_tl.evaluate", "mr_tl.storage", "mr_tl.feature_store",
            "mr_tl.train", "mr_tl.parquet", "mr_tl.predict", "mr_tl.predictions", "mr_tl.fastfs"}


def module_name(path):
    rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def imports_of(path):
    """``(module, imported module names)``: every import, top level or inside a function."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    me = module_name(path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            names.add(base)
            names.update("%s.%s" % (base, a.name) for a in node.names)
    return me, names


def all_modules():
    out = {}
    for directory, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                me, names = imports_of(os.path.join(directory, name))
                out[me] = names
    return out


MODULES = all_modules()


def is_adapter(module):
    return any(module == a or module.startswith(a + ".") for a in ADAPTERS)


def mr_tl_imports(module):
    """The mr_tl modules ``module`` imports (names resolved to existing modules)."""
    out = set()
    for name in MODULES[module]:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module and name.startswith("mr_tl"):
            out.add(name)
    return out


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not is_adapter(m)))
def test_the_core_imports_no_mrjob(module):
    """Neither the module nor any mr_tl module it imports (transitively) imports mrjob."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        assert not any(n == "mrjob" or n.startswith("mrjob.") for n in MODULES[current]), \
            "%s imports mrjob (reached from %s)" % (current, module)
        todo += [m for m in mr_tl_imports(current) if not m.startswith("mr_tl.monitor")]


def test_no_import_cycles():
    """The import graph between mr_tl modules is acyclic (a package and its __init__ are one node)."""
    graph = {m: {i for i in mr_tl_imports(m) if i != "mr_tl" and not m.startswith(i + ".")} for m in MODULES}
    state, path = {}, []

    def visit(m):
        state[m] = "active"
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "active":
                raise AssertionError("import cycle: %s" % " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_adapter_list_is_current():
    """Every adapter named above exists (so a rename cannot quietly widen the core's exceptions)."""
    for name in ADAPTERS:
        assert name in MODULES or any(m.startswith(name + ".") for m in MODULES), name
