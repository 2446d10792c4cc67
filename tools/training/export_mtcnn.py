"""Export the ``mtcnn`` package's P-Net, R-Net and O-Net to float32 TFLite models.

Usage: python tools/training/export_mtcnn.py [--out models/] [--weights stock|masks]

``--weights masks`` exports our fine-tuned R-Net and O-Net instead (tools/training/mtcnn_train.py wrote
their Keras weights to .cache/mtcnn/<net>_weights.npz) as mtcnn_masks_{rnet,onet}.tflite; the masks
cascade keeps the stock P-Net (tools/training/mtcnn_stages.py: P-Net loses ~2% of masked faces).
``--dev-threshold rnet=0.15`` bakes a threshold chosen on the dev parts into the net: the face logit's
bias is shifted by logit(config threshold) - logit(0.15), so "score > config threshold" with the exported
net is exactly "score > 0.15" with the trained one, and the daemon's thresholds stay one config for both.
``--average _v2 _v4c`` exports the element-wise mean of several fine-tunes' weights (``<net>_weights<TAG>.npz``,
fine-tuned from one another, so their weights stay close: a "model soup") instead of ``--tag``'s.

The weights are the ones shipped in the mtcnn wheel (site-packages/mtcnn/assets/weights/*.lz4,
joblib) loaded into the package's own Keras classes, so our runtime cascade (mask_guard/faces.py)
runs exactly these numbers without TensorFlow. P-Net is fully convolutional and is exported with a
dynamic (None, None) spatial input: the runtime resizes its input per pyramid scale. R-Net/O-Net
take a dynamic batch of 24x24 / 48x48 crops. Output order in the .tflite may differ from Keras;
faces.py picks outputs by shape. Prints sizes and a parity check against the Keras nets.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# name -> input shape without the (dynamic) batch dimension
NETS = {
    "pnet": (None, None, 3),
    "rnet": (24, 24, 3),
    "onet": (48, 48, 3),
}


FINE_TUNED = ("rnet", "onet")  # the shipped "masks" nets; --nets pnet exports a fine-tuned P-Net (tried)
CACHE = ROOT / ".cache" / "mtcnn"


def keras_net(name: str, weights: Path | None = None):
    """The package's Keras net for ``name`` with its shipped weights (or an .npz of ``get_weights()``)."""
    from mtcnn.network.onet import ONet
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet
    from mtcnn.utils.tensorflow import load_weights

    net = {"pnet": PNet, "rnet": RNet, "onet": ONet}[name]()
    net.build()
    net.set_weights(load_weights(f"{name}.lz4"))
    if weights is not None:
        with np.load(weights) as w:
            net.set_weights([w[f"arr_{i}"] for i in range(len(w.files))])
    return net


def shift_face_logit(net, name: str, dev_threshold: float) -> None:
    """Make ``score > config threshold`` equal ``score > dev_threshold`` (2-class softmax: a bias shift)."""
    from mask_guard.config import FacesConfig

    config_t = FacesConfig().thresholds[{"pnet": 0, "rnet": 1, "onet": 2}[name]]
    layer = getattr(net, {"pnet": "conv4_2", "rnet": "fc5_2", "onet": "fc6_3"}[name])
    k, b = layer.get_weights()
    logit = lambda t: float(np.log(t / (1 - t)))  # noqa: E731
    b = b.copy()
    b[1] += logit(config_t) - logit(dev_threshold)
    layer.set_weights([k, b])
    print(f"{name}: face bias shifted by {logit(config_t) - logit(dev_threshold):+.3f} "
          f"(dev threshold {dev_threshold} at config {config_t})")


def convert(name: str, net) -> bytes:
    """Wrap ``net`` in a functional model and convert it to a float32 TFLite flatbuffer."""
    import tensorflow as tf

    inp = tf.keras.Input(shape=NETS[name], batch_size=None, name="image", dtype="float32")
    outs = net(inp)
    model = tf.keras.Model(inp, outs, name=f"mtcnn_{name}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    # Plain float32 builtins: no quantization, so the cascade matches the package numerically.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the whole traced signature
        return converter.convert()


def run_tflite(path: Path, x: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    idx = interp.get_input_details()[0]["index"]
    interp.resize_tensor_input(idx, list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(idx, x)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def parity(name: str, net, path: Path) -> float:
    """Largest abs difference between Keras and TFLite outputs on random normalized input."""
    rng = np.random.default_rng(0)
    shape = (1, 97, 131, 3) if name == "pnet" else (5, *NETS[name])
    x = rng.uniform(-1, 1, size=shape).astype(np.float32)
    ref = [np.asarray(o) for o in net(x)]
    got = run_tflite(path, x)
    worst = 0.0
    for r in ref:  # match outputs by shape: the converter may reorder them
        same = [g for g in got if g.shape == r.shape]
        if not same:
            raise SystemExit(f"{path.name}: no TFLite output with shape {r.shape} (got {[g.shape for g in got]})")
        worst = max(worst, min(float(np.abs(g - r).max()) for g in same))
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "models", help="output folder (default: models/)")
    ap.add_argument("--weights", default="stock", choices=["stock", "masks"])
    ap.add_argument("--from", dest="src", type=Path, default=CACHE, help="folder with <net>_weights.npz (masks)")
    ap.add_argument("--tag", default="", help="masks: read <net>_weights<TAG>.npz (mtcnn_train.py --tag)")
    ap.add_argument("--average", nargs="+", metavar="TAG", help="masks: the mean of these tags' weights (see above)")
    ap.add_argument("--nets", nargs="+", choices=list(NETS), help="only these nets")
    ap.add_argument("--dev-threshold", nargs="+", default=[], metavar="NET=T",
                    help="masks: threshold chosen on the dev parts, baked in as a bias shift (see above)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.nets or (NETS if args.weights == "stock" else FINE_TUNED):
        if args.weights == "stock":
            net, path = keras_net(name), args.out / f"mtcnn_{name}.tflite"
        else:
            path = args.out / f"mtcnn_masks_{name}.tflite"
            if args.average:
                net = keras_net(name)
                soup = [keras_net(name, args.src / f"{name}_weights{t}.npz").get_weights() for t in args.average]
                net.set_weights([np.mean([w[i] for w in soup], axis=0) for i in range(len(soup[0]))])
            else:
                net = keras_net(name, args.src / f"{name}_weights{args.tag}.npz")
            dev = dict(kv.split("=") for kv in args.dev_threshold)
            if name in dev:
                shift_face_logit(net, name, float(dev[name]))
        path.write_bytes(convert(name, net))
        diff = parity(name, net, path)
        print(f"{path}: {path.stat().st_size / 1024:.1f} KiB, max |keras - tflite| = {diff:.2e}")
        if diff > 1e-4:
            print(f"  WARNING: {name} differs from Keras by more than 1e-4", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
