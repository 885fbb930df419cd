"""mr_tl: image transfer learning as Hadoop Streaming MapReduce jobs.

A frozen ONNX trunk (VGG16 cut at ``fc2``, or EfficientNet-Lite0) turns
images into feature vectors in map-only jobs; a softmax head is trained on
those features by iterative parameter averaging, one MapReduce job per round.
"""

__version__ = "0.1.0"
