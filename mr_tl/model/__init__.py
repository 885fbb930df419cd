"""Feature-extractor models: build, cut and describe ONNX graphs.

``python -m mr_tl.model --help`` lists the commands.
"""

from mr_tl.errors import ModelError
from mr_tl.model.spec import ModelSpec, load_model_spec, sha256_file, sidecar_path

__all__ = ["ModelError", "ModelSpec", "load_model_spec", "sha256_file", "sidecar_path"]
