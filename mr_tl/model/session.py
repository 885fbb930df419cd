"""The frozen trunk: an onnxruntime session plus its preprocessing spec.

Knows nothing of MapReduce; the featurize job, ``predict`` and the
benchmarks all use it::

    featurizer = Featurizer("models/vgg16-fc2.onnx", threads=2)
    x = np.stack([preprocess(data, featurizer.spec) for data in images])
    features = featurizer(x)            # (N, 4096) float32
"""

import os

import numpy as np

from mr_tl.errors import ModelError
from mr_tl.model.spec import load_model_spec


def session_options(threads, check_only=False):
    """onnxruntime options for one task that owns ``threads`` cores.

    Threads are set explicitly: onnxruntime's default is one thread per core
    of the machine, which oversubscribes the cores when Hadoop runs several
    map tasks per node.

    ``check_only``: for a session that is only created to prove the graph
    loads and to read its inputs/outputs (the job driver's check), skip the
    graph optimizations and weight prepacking -- they are most of the
    session-creation time and all of its extra memory, and a check never
    runs the graph.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if check_only:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
    else:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads <= 1:
        # nothing to spin for; keeps a single-threaded task from burning a second core
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


# A graph file this large carries its weights inline; only smaller ones are
# parsed to look for external-data references.  Parsing a 500 MB protobuf
# just to learn that it has none would cost seconds per task.
EXTERNAL_DATA_PROBE_MAX_BYTES = 64 << 20


def external_data_files(model_path):
    """``[(path, location)]`` of the external-data files an ONNX graph refers to (``[]`` if none).

    Graphs saved with external data (``onnx.save(..., save_as_external_data=True)``)
    keep their weights in separate files that onnxruntime memory-maps: a
    session is created without parsing and copying the weights, and
    concurrent tasks on a node share their pages.  ``path`` is where the
    file should be (beside the graph), ``location`` what the graph calls it.
    """
    if os.path.getsize(model_path) > EXTERNAL_DATA_PROBE_MAX_BYTES:
        return []
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    try:
        model = onnx.load(model_path, load_external_data=False)
    except Exception:  # not ONNX at all: onnxruntime reports that properly
        return []
    tensors = list(model.graph.initializer)
    for node in model.graph.node:  # Constant nodes may hold external tensors too
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    folder = os.path.dirname(os.path.abspath(model_path))
    found = {}
    for tensor in tensors:
        if uses_external_data(tensor):
            location = ExternalDataInfo(tensor).location
            found[location] = os.path.join(folder, location)
    return [(path, location) for location, path in sorted(found.items())]


def _session_source(model_path, options):
    """What to hand onnxruntime for ``model_path``: the path, or the graph's bytes.

    Hadoop and mrjob give a task each shipped file as a symlink into its own
    cache folder.  onnxruntime resolves symlinks and refuses external data
    outside the graph's real folder, so for such a layout the (small) graph
    is passed as bytes with the data files' real folder named explicitly.
    """
    files = external_data_files(model_path)
    if not files:
        return model_path
    model_dir = os.path.dirname(os.path.realpath(model_path))
    data_dirs = {os.path.dirname(os.path.realpath(path)) for path, _ in files}
    if data_dirs == {model_dir}:
        return model_path
    if len(data_dirs) != 1 or any(os.path.basename(location) != location for _, location in files):
        raise ModelError("the external-data files of %s are spread over several folders (%s); keep them "
                         "beside the graph" % (model_path, ", ".join(sorted(data_dirs))))
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", data_dirs.pop())
    with open(model_path, "rb") as f:
        return f.read()


class Featurizer:
    """Runs a feature-extractor graph on preprocessed image batches.

    Parameters
    ----------
    model_path : the ``.onnx`` file; its sidecar ``.json`` must sit beside it
        (or pass ``spec``).
    threads : onnxruntime intra-op threads for this process.
    verify_hash : check the graph file against the sidecar's sha256 first
        (drivers do; tasks receive files the driver already checked).
    check_only : load the graph without optimizing it (see
        :func:`session_options`); enough to check it, slower to run.
    """

    def __init__(self, model_path, spec=None, threads=1, verify_hash=True, check_only=False):
        import onnxruntime as ort

        self.spec = spec if spec is not None else load_model_spec(model_path, verify_hash=verify_hash)
        self.threads = threads
        try:
            options = session_options(threads, check_only)
            self.session = ort.InferenceSession(_session_source(model_path, options), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError("onnxruntime cannot load %s: %s" % (model_path, e)) from None
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [self.spec.input_name] or self.spec.output_name not in outputs:
            raise ModelError("sidecar of %s does not match the graph: sidecar says %s -> %s, graph has %s -> %s"
                             % (model_path, self.spec.input_name, self.spec.output_name,
                                ", ".join(inputs), ", ".join(outputs)))
        self.dim = self.spec.output_dim

    def __call__(self, batch):
        """``(N, C, H, W)`` (or NHWC) float32 inputs -> ``(N, dim)`` float32 features."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        (out,) = self.session.run([self.spec.output_name], {self.spec.input_name: batch})
        out = out.reshape(len(batch), -1)
        if out.shape[1] != self.dim:
            raise ModelError("graph produced %d features, sidecar says %d" % (out.shape[1], self.dim))
        return out


# One Featurizer per process, reused by every task that runs in it: the
# inline runner runs all map tasks (and the driver's check) in one process,
# and creating a VGG16 session costs seconds each time.  Other runners start
# one process per task, where the cache simply holds that task's session.
_shared: dict[tuple[object, ...], "Featurizer"] = {}  # (model identity, input, output, threads)


def shared_featurizer(model_path, spec, threads):
    """The process-wide Featurizer for this graph content and thread count (created on first use).

    Keyed by the sidecar's ``model_sha256`` (the driver verified the file
    against it; runners hand tasks copies under other paths), falling back
    to the file's real path, size and mtime for a sidecar without a hash.
    Holds one model at a time: a different one replaces it.
    """
    if spec.model_sha256:
        identity = spec.model_sha256
    else:
        st = os.stat(model_path)
        identity = (os.path.realpath(model_path), st.st_size, st.st_mtime_ns)
    key = (identity, spec.input_name, spec.output_name, int(threads))
    featurizer = _shared.get(key)
    if featurizer is None:
        _shared.clear()  # drop the old session before loading a new one
        featurizer = _shared[key] = Featurizer(model_path, spec, threads=threads, verify_hash=False)
    return featurizer
