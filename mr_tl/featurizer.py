"""The frozen trunk: an onnxruntime session plus its preprocessing spec.

Knows nothing of MapReduce; the featurize job, ``predict`` and the
benchmarks all use it::

    featurizer = Featurizer("models/vgg16-fc2.onnx", threads=2)
    x = np.stack([preprocess(data, featurizer.spec) for data in images])
    features = featurizer(x)            # (N, 4096) float32
"""

import os

import numpy as np

from mr_tl.model.spec import ModelError, load_model_spec


def session_options(threads):
    """onnxruntime options for one task that owns ``threads`` cores.

    Threads are set explicitly: onnxruntime's default is one thread per core
    of the machine, which oversubscribes the cores when Hadoop runs several
    map tasks per node.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads <= 1:
        # nothing to spin for; keeps a single-threaded task from burning a second core
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class Featurizer:
    """Runs a feature-extractor graph on preprocessed image batches.

    Parameters
    ----------
    model_path : the ``.onnx`` file; its sidecar ``.json`` must sit beside it
        (or pass ``spec``).
    threads : onnxruntime intra-op threads for this process.
    verify_hash : check the graph file against the sidecar's sha256 first
        (drivers do; tasks receive files the driver already checked).
    """

    def __init__(self, model_path, spec=None, threads=1, verify_hash=True):
        import onnxruntime as ort

        self.spec = spec if spec is not None else load_model_spec(model_path, verify_hash=verify_hash)
        self.threads = threads
        try:
            self.session = ort.InferenceSession(model_path, session_options(threads),
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


def default_threads():
    """Cores this process may use (respects CPU affinity, e.g. YARN cgroups/taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
