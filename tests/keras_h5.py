"""Write VGG16 weights in Keras' legacy ``.h5`` weights layout (test helper).

The layout is the one of Keras' ``vgg16_weights_tf_dim_ordering_tf_kernels.h5``
and of Keras 2's ``model.save_weights("x.h5")``
(``keras/src/legacy/saving/legacy_h5_format.py``, ``save_weights_to_hdf5_group``)::

    /                        attrs: layer_names = [b"input_1", b"block1_conv1", ...]  (model order)
                                    backend = b"tensorflow", keras_version = b"2.x"
    /block1_conv1            attrs: weight_names = [b"block1_conv1/kernel:0", b"block1_conv1/bias:0"]
    /block1_conv1/block1_conv1/kernel:0   dataset (3, 3, 3, 64)   (the "/" in a name nests a group)
    /block1_conv1/block1_conv1/bias:0     dataset (64,)
    /block1_pool             attrs: weight_names = []  (a weightless layer still has its group)
    ...

Keras' legacy loader (``load_weights_from_hdf5_group``, what
``keras.applications.VGG16(weights=...)`` and ``model.load_weights("x.h5")``
run) matches the layers *with* weights in ``layer_names`` order to the
model's layers with weights, and reads each layer's datasets in
``weight_names`` order.  ``scripts/dev/verify_vgg16_keras.py`` shows Keras
loading a file written by this function; ``tests/test_vgg16_keras_h5.py``
writes tiny ones with it.  Needs ``h5py``.
"""

import numpy as np

from mr_tl.model.vgg16 import layer_list

DEFAULT_LAYER_NAMES = ("input_1",) + tuple(layer_list())


def write_keras_legacy_h5(path, weights, layer_names=DEFAULT_LAYER_NAMES, backend="tensorflow",
                          keras_version="2.2.4"):
    """Write ``weights`` (``{layer: (kernel, bias)}``, Keras layout) to ``path``.

    ``layer_names`` lists every layer of the model in order, weightless ones
    included (they get a group with an empty ``weight_names``); every layer
    of ``weights`` must be among them.
    """
    import h5py

    missing = sorted(set(weights) - set(layer_names))
    if missing:
        raise ValueError("layers %s are not in layer_names" % missing)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode("utf8") for n in layer_names])
        f.attrs["backend"] = backend.encode("utf8")
        f.attrs["keras_version"] = keras_version.encode("utf8")
        # Keras creates the groups sorted by name ("strictly growing to avoid prefix issues").
        for name in sorted(layer_names):
            group = f.create_group(name)
            arrays = weights.get(name, ())
            names = [("%s/%s:0" % (name, kind)).encode("utf8") for kind in ("kernel", "bias")][:len(arrays)]
            # an empty list is stored as an empty float array, as np.asarray([]) does in Keras
            group.attrs["weight_names"] = np.array(names) if names else np.array([], dtype=np.float64)
            for wname, value in zip(names, arrays):
                value = np.asarray(value)
                dset = group.create_dataset(wname.decode("utf8"), value.shape, dtype=value.dtype)
                dset[...] = value
