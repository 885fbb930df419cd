"""Test-time augmentation of the trunk's inputs: what ``featurize --augment`` does, and its ONNX form.

``none``  the features of the image.
``flip``  the mean of the features of the image and of its horizontal mirror (float32:
          ``(f(x) + f(mirror(x))) * 0.5``).  The trunk runs once on the doubled batch
          ``[x; mirror(x)]``.

The augmentation is part of what made a set of features (the ``augment`` field
of :func:`mr_tl.feature_store.made_by`): a head trained on flip-averaged
features is only applied to flip-averaged features, and the classifier
``mr_tl.export`` builds for it does the same averaging inside its graph
(:func:`add_flip_nodes`), so ``mr_tl.predict`` needs nothing extra.
"""

import numpy as np

AUGMENTS = ("none", "flip")


def width_axis(layout):
    """The width axis of a batch of network inputs in ``layout`` (NCHW or NHWC)."""
    return 3 if layout == "NCHW" else 2


def mirrored(batch, layout):
    """The horizontal mirror of every image of a ``(N, ...)`` batch of network inputs."""
    return np.flip(batch, axis=width_axis(layout))


def flip_averaged(trunk, batch, layout):
    """``(f(x) + f(mirror(x))) * 0.5`` of every image, the trunk ``f`` run once on the doubled batch."""
    batch = np.asarray(batch, dtype=np.float32)
    n = len(batch)
    out = trunk(np.concatenate([batch, mirrored(batch, layout)]))
    return (out[:n] + out[n:]) * np.float32(0.5)


def apply(augment, trunk, batch, layout):
    """The features of a batch under ``augment`` (one of AUGMENTS)."""
    if augment == "none":
        return trunk(batch)
    if augment == "flip":
        return flip_averaged(trunk, batch, layout)
    raise ValueError("augment must be one of %s, found %r" % (", ".join(AUGMENTS), augment))


def add_flip_nodes(model, input_name, layout, prefix="tta/"):
    """Make ``model`` (an onnx ModelProto whose graph input is ``input_name``) run on the batch
    ``[x; mirror(x)]`` instead of ``x``: every node that read the input reads the doubled batch.
    Returns nothing; :func:`add_mean_of_halves` then averages the two halves of an output."""
    from onnx import helper, numpy_helper

    g = model.graph
    batch = prefix + "batch"
    for node in g.node:
        for i, name in enumerate(node.input):
            if name == input_name:
                node.input[i] = batch
    big = np.iinfo(np.int64).max
    g.initializer.extend([
        numpy_helper.from_array(np.array([-1], dtype=np.int64), prefix + "starts"),
        numpy_helper.from_array(np.array([-big], dtype=np.int64), prefix + "ends"),
        numpy_helper.from_array(np.array([width_axis(layout)], dtype=np.int64), prefix + "axes"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), prefix + "steps"),
    ])
    nodes = [helper.make_node("Slice", [input_name, prefix + "starts", prefix + "ends", prefix + "axes",
                                        prefix + "steps"], [prefix + "mirror"], name=prefix + "mirror"),
             helper.make_node("Concat", [input_name, prefix + "mirror"], [batch], name=prefix + "batch", axis=0)]
    # the new nodes go first: a graph's nodes are listed in topological order
    existing = list(g.node)
    del g.node[:]
    g.node.extend(nodes + existing)


def add_mean_of_halves(model, x, dim, prefix="tta/"):
    """Nodes averaging the two halves of the ``(2N, dim)`` tensor ``x`` (rows of ``x`` then rows of its
    mirror) into ``(N, dim)``, as :func:`flip_averaged` does; returns the output tensor's name."""
    from onnx import helper, numpy_helper

    g = model.graph
    g.initializer.extend([
        numpy_helper.from_array(np.array([2, -1, dim], dtype=np.int64), prefix + "halves_shape"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), prefix + "first"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), prefix + "second"),
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), prefix + "half"),
    ])
    g.node.extend([
        helper.make_node("Reshape", [x, prefix + "halves_shape"], [prefix + "halves"], name=prefix + "halves"),
        helper.make_node("Gather", [prefix + "halves", prefix + "first"], [prefix + "a3"], name=prefix + "a", axis=0),
        helper.make_node("Gather", [prefix + "halves", prefix + "second"], [prefix + "b3"], name=prefix + "b",
                         axis=0),
        helper.make_node("Add", [prefix + "a3", prefix + "b3"], [prefix + "sum3"], name=prefix + "sum"),
        helper.make_node("Mul", [prefix + "sum3", prefix + "half"], [prefix + "mean3"], name=prefix + "mean"),
        helper.make_node("Flatten", [prefix + "mean3"], [prefix + "mean"], name=prefix + "flatten", axis=2),
    ])
    return prefix + "mean"
