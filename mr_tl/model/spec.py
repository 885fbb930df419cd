"""The sidecar: what a feature-extractor graph expects and what it gives.

A model is always two files side by side, like a Keras application and its
``preprocess_input``::

    models/vgg16-fc2.onnx        the graph
    models/vgg16-fc2.json        its ModelSpec (this module)

The spec says how to turn an image file into the graph's input (size, resize
policy, channel order, scale, mean/std, layout) and what comes out (tensor
name and dimension), plus the sha256 of the graph file, so a graph and a
sidecar that do not belong together are refused before any job runs.
"""

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from mr_tl.digest import file_digest
from mr_tl.errors import ModelError

SPEC_FORMAT = "mr_tl.model-spec/1"

RESIZE_POLICIES = ("squash", "center-crop", "letterbox")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
# How "letterbox" fills the padding (see mr_tl.images.pad_colour):
#   "edge-mean": the mean colour of the image's edges next to the padding (a
#                transparent image, composited on white, has white edges, so it
#                gets white padding); "mean": the mean colour of the whole image;
#   "white"; or an explicit [r, g, b] in 0..255.
PAD_COLOURS = ("edge-mean", "mean", "white")
DEFAULT_PAD_COLOUR = "edge-mean"




def sha256_file(path):
    return file_digest(path, "sha256")


def sidecar_path(model_path):
    """``foo.onnx`` -> ``foo.json``: where a graph's spec lives."""
    root, ext = os.path.splitext(model_path)
    return (root if ext == ".onnx" else model_path) + ".json"


@dataclass
class ModelSpec:
    """Preprocessing and output description of one ONNX feature extractor."""

    input_name: str
    input_size: tuple  # (height, width)
    output_name: str
    output_dim: int
    resize: str = "squash"            # or "center-crop": shorter side -> resize_shorter, then crop
                                      # or "letterbox": longer side -> input size, padded (nothing cropped)
    resize_shorter: int = 0           # used by center-crop; 0 means max(input_size)
    pad_colour: str | Sequence[int] = DEFAULT_PAD_COLOUR  # used by letterbox: one of PAD_COLOURS or [r, g, b]
    interpolation: str = "bilinear"
    channel_order: str = "RGB"        # or "BGR" (Keras/Caffe VGG16)
    scale: float = 1.0                # multiplies 0..255 pixel values before mean/std
    mean: tuple = (0.0, 0.0, 0.0)     # per channel, in channel_order
    std: tuple = (1.0, 1.0, 1.0)
    layout: str = "NCHW"              # or "NHWC"
    cut_at: str = ""                  # layer the graph was cut after ("" = not cut)
    model_sha256: str = ""            # sha256 of the .onnx file this spec describes
    external_data: dict = field(default_factory=dict)  # weights files beside the graph: name -> sha256
    source_sha256: str = ""           # sha256 of the file the graph was made from
    source: str = ""                  # provenance, one line
    license: str = ""
    format: str = field(default=SPEC_FORMAT)

    def __post_init__(self):
        self.input_size = tuple(int(n) for n in self.input_size)
        self.mean = tuple(float(x) for x in self.mean)
        self.std = tuple(float(x) for x in self.std)
        problems = []
        if self.format != SPEC_FORMAT:
            problems.append("format %r (expected %r)" % (self.format, SPEC_FORMAT))
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            problems.append("input_size %r (expected [height, width])" % (self.input_size,))
        if self.resize not in RESIZE_POLICIES:
            problems.append("resize %r (expected one of %s)" % (self.resize, ", ".join(RESIZE_POLICIES)))
        if isinstance(self.pad_colour, (list, tuple)):
            if len(self.pad_colour) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255
                                                 for v in self.pad_colour):
                self.pad_colour = tuple(self.pad_colour)
            else:
                problems.append("pad_colour %r (expected three integers in 0..255)" % (self.pad_colour,))
        elif self.pad_colour not in PAD_COLOURS:
            problems.append("pad_colour %r (expected one of %s or [r, g, b])"
                            % (self.pad_colour, ", ".join(PAD_COLOURS)))
        if self.interpolation not in INTERPOLATIONS:
            problems.append("interpolation %r (expected one of %s)"
                            % (self.interpolation, ", ".join(INTERPOLATIONS)))
        if self.channel_order not in ("RGB", "BGR"):
            problems.append("channel_order %r (expected RGB or BGR)" % self.channel_order)
        if self.layout not in ("NCHW", "NHWC"):
            problems.append("layout %r (expected NCHW or NHWC)" % self.layout)
        if len(self.mean) != 3 or len(self.std) != 3 or min(abs(s) for s in self.std) == 0:
            problems.append("mean/std %r/%r (expected 3 values each, std non-zero)" % (self.mean, self.std))
        if self.resize == "center-crop" and self.resize_shorter and self.resize_shorter < max(self.input_size):
            problems.append("resize_shorter %d (center-crop needs at least the larger input side, %d)"
                            % (self.resize_shorter, max(self.input_size)))
        if not isinstance(self.external_data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.external_data.items()):
            problems.append("external_data %r (expected {file name: sha256})" % (self.external_data,))
        if int(self.output_dim) < 1:
            problems.append("output_dim %r" % self.output_dim)
        if problems:
            raise ModelError("invalid model spec: " + "; ".join(problems))
        self.output_dim = int(self.output_dim)

    @property
    def shorter_side(self):
        """The side the shorter image side is resized to before a centre crop."""
        return self.resize_shorter or max(self.input_size)

    def to_json(self):
        fields = dataclasses.asdict(self)
        if self.resize != "letterbox":
            # only letterbox pads: sidecars of the other policies stay as they always were,
            # readable by an mr_tl that knows no pad_colour
            del fields["pad_colour"]
        return json.dumps(fields, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, obj):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise ModelError("model spec has unknown keys %s" % ", ".join(unknown))
        try:
            return cls(**obj)
        except TypeError as e:
            raise ModelError("model spec is incomplete: %s" % e) from None

    def save(self, path):
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_json())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except FileNotFoundError:
            raise ModelError("model sidecar %s is missing (every .onnx graph needs its .json spec "
                             "beside it; `python -m mr_tl.model cut` writes one)" % path) from None
        except json.JSONDecodeError as e:
            raise ModelError("model sidecar %s is not valid JSON: %s" % (path, e)) from None
        if not isinstance(obj, dict):
            raise ModelError("model sidecar %s must hold a JSON object" % path)
        return cls.from_dict(obj)


def load_model_spec(model_path, verify_hash=True):
    """The spec beside ``model_path``, checked against the graph file's hash."""
    if not os.path.isfile(model_path):
        raise ModelError("model file %s does not exist" % model_path)
    spec = ModelSpec.load(sidecar_path(model_path))
    if verify_hash:
        if not spec.model_sha256:
            raise ModelError("sidecar %s records no model_sha256" % sidecar_path(model_path))
        actual = sha256_file(model_path)
        if actual != spec.model_sha256:
            raise ModelError("model file %s does not match its sidecar: sha256 is %s, sidecar expects %s "
                             "(was the graph replaced or the wrong sidecar copied?)"
                             % (model_path, actual, spec.model_sha256))
        for name, expected in sorted(spec.external_data.items()):
            data_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), name)
            if os.path.basename(name) != name or not os.path.isfile(data_path):
                raise ModelError("the weights file %s of %s is missing (it must sit beside the graph)"
                                 % (name, model_path))
            actual = sha256_file(data_path)
            if actual != expected:
                raise ModelError("weights file %s does not match the sidecar of %s: sha256 is %s, sidecar "
                                 "expects %s" % (data_path, model_path, actual, expected))
    return spec


PROVENANCE = ("format", "source", "source_sha256", "license", "model_sha256", "external_data", "input_name")


def made_by(spec, model_file="", augment="none"):
    """What made a set of features: the model (its sha256, output, dimension) and how images became
    its inputs (the preprocessing of its sidecar, the augmentation).  Travels with features, runs and
    heads, so a head is never applied to features made another way."""
    preprocessing = {k: v for k, v in dataclasses.asdict(spec).items()
                     if k not in PROVENANCE and k not in ("output_name", "output_dim", "cut_at")}
    if spec.resize != "letterbox":
        preprocessing.pop("pad_colour", None)   # only letterbox pads
    described = {"file": model_file, "sha256": spec.model_sha256, "output": spec.output_name,
                 "dim": spec.output_dim, "cut_at": spec.cut_at, "preprocessing": preprocessing, "augment": augment}
    return json.loads(json.dumps(described))   # as it reads back from a JSON file (lists, not tuples)


def _shown(obj, key):
    return repr(obj[key]) if key in obj else "not set"


def describe_difference(mine, theirs, theirs_name="the head's"):
    """What differs between two entries of :func:`made_by` (e.g. two ``preprocessing`` dicts), one line:
    ``resize: 'letterbox' (the head's: 'center-crop'); pad_colour: 'edge-mean' (the head's: not set)``."""
    if isinstance(mine, dict) and isinstance(theirs, dict):
        keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k, ()) != theirs.get(k, ()))
        return "; ".join("%s: %s (%s: %s)" % (k, _shown(mine, k), theirs_name, _shown(theirs, k)) for k in keys)
    return "%r (%s: %r)" % (mine, theirs_name, theirs)
