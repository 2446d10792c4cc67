#!/usr/bin/env python3
"""Recover trainable Keras weights of the mouth/nose/mask detector from a float32 .tflite.

The training runs' Keras weights live in .cache/ (never in git), so a fresh checkout has only the exported
models. The float32 export holds every weight: the converter folded each batch normalisation into the
convolution before it (kernel scaled, BN shift as the bias). This puts the folded kernels back into the
Keras model (tools/training/mouth_model.py) and sets each BN to the identity plus that bias (gamma 1,
mean 0, variance 1 - epsilon), so the Keras model computes what the .tflite computes (checked below).
Fine-tune it with ``train_mouth.py --init OUT/best.weights.h5 --freeze-bn``: a BN whose statistics are the
identity must stay frozen, or its first training batch would renormalise every layer.

    .venv/bin/python tools/training/recover_mouth.py [--tflite models/mouth_nose_float32.tflite] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mouth_common import CACHE, INPUT_SIZE, MODELS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tflite", default=str(MODELS / "mouth_nose_float32.tflite"))
    ap.add_argument("--export-json", default=str(MODELS / "mouth_nose_export.json"), help="its anchors")
    ap.add_argument("--width", type=float, default=0.75)
    ap.add_argument("--out", default=str(CACHE / "recovered"))
    args = ap.parse_args()

    from keras import layers

    import mouth_model as mm
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # No default delegate: XNNPACK would own the constant tensors, and get_tensor could not read them.
    it = Interpreter(model_path=args.tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    names = {d["index"]: d["name"] for d in it.get_tensor_details()}
    convs = [op for op in it._get_ops_details() if op["op_name"] == "CONV_2D"]
    folded = [(names[op["inputs"][1]], it.get_tensor(op["inputs"][1]), it.get_tensor(op["inputs"][2])) for op in convs]

    model = mm.build_model(INPUT_SIZE, args.width)
    used: set[int] = set()
    for conv in (layer for layer in model.layers if isinstance(layer, layers.Conv2D)):
        shape = tuple(conv.kernel.shape)  # Keras HWIO; TFLite OHWI. Every conv of this net has its own shape.
        j = next(j for j, (_, w, _) in enumerate(folded) if j not in used and (*w.shape[1:], w.shape[0]) == shape)
        used.add(j)
        _, w, b = folded[j]
        kernel = np.transpose(w, (1, 2, 3, 0))
        if conv.use_bias:  # the two heads
            conv.set_weights([kernel, b])
            continue
        conv.set_weights([kernel])
        bn = model.get_layer(conv.name.replace("conv2d", "batch_normalization"))  # built in pairs (mouth_model._conv)
        bn.set_weights([np.ones_like(b), b, np.zeros_like(b), np.full_like(b, 1.0 - bn.epsilon)])
    if len(used) != len(folded):
        raise SystemExit(f"{args.tflite}: {len(folded)} convolutions, {len(used)} matched: not this architecture")

    anchors = np.array(json.loads(Path(args.export_json).read_text())["anchors"], np.float32)
    x = np.random.default_rng(0).uniform(0, 1, (8, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32)
    _, keras_scores = mm.decode(model(x, training=False), INPUT_SIZE, anchors)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], x.shape)
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
    tfl_scores = next(it.get_tensor(d["index"]) for d in it.get_output_details() if d["shape"][-1] == mm.NUM_CLASSES)
    diff = float(np.abs(keras_scores.numpy() - tfl_scores).max())
    print(f"max |score difference| Keras vs {Path(args.tflite).name}: {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("the recovered model does not reproduce the .tflite")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_weights(out / "best.weights.h5")
    (out / "anchors.json").write_text(json.dumps({"anchors": anchors.tolist(), "width": args.width,
                                                  "input_size": INPUT_SIZE, "recovered_from": str(args.tflite)}))
    print(f"wrote {out / 'best.weights.h5'}")


if __name__ == "__main__":
    main()
