#!/usr/bin/env python3
"""Export the trained mouth/nose detector to TFLite (float32 and full-integer int8) and check parity.

    .venv/bin/python tools/training/export_mouth.py [--run .cache/mouth/run] [--weights best] [--default int8]

Writes models/mouth_nose_float32.tflite, models/mouth_nose_int8.tflite and models/mouth_nose.tflite
(a copy of --default), then loads each with the project's loader (ai_edge_litert) through
mask_guard.mouths.MouthDetector and compares, on the validation crops, its per-face [mouth, nose]
scores with the Keras model's. Figures go to models/mouth_nose_export.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mouth_common import load_meta, CACHE, INPUT_SIZE, MODELS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=str(CACHE / "run"))
    ap.add_argument("--weights", default="best")
    ap.add_argument("--default", choices=["int8", "float32"], default="int8")
    ap.add_argument("--calib", type=int, default=400, help="training crops for int8 calibration")
    ap.add_argument("--out", default=str(MODELS), help="folder for the .tflite files and export report "
                    "(a candidate goes elsewhere first; copy into models/ once it measures better)")
    args = ap.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    import mouth_model as mm
    from train_mouth import face_scores, val_figures

    from mask_guard.config import MouthsConfig
    from mask_guard.mouths import MouthDetector

    run = Path(args.run)
    info = json.loads((run / "anchors.json").read_text())
    anchors = np.array(info["anchors"], np.float32)
    model = mm.build_model(INPUT_SIZE, info["width"])
    model.load_weights(run / f"{args.weights}.weights.h5")

    @tf.function(input_signature=[tf.TensorSpec([None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name="image")])
    def serve(x):
        boxes, scores = mm.decode(model(x, training=False), INPUT_SIZE, anchors)
        return {"boxes": boxes, "scores": scores}

    data = np.load(CACHE / "dataset.npz")
    meta = load_meta()
    split = np.array([m["split"] for m in meta])
    kinds = np.array([m["kind"] for m in meta])
    tr, va = np.nonzero(split == "train")[0], np.nonzero(split == "val")[0]
    rng = np.random.default_rng(0)
    calib = data["exact"][rng.choice(tr, args.calib, replace=False)]

    def representative():
        for c in calib:
            yield [c[None].astype(np.float32) / 255.0]

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # batch stays dynamic (MouthDetector batches a frame's faces); weights become constants: a model with resource variables would need READ_VARIABLE at run time
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind in ("float32", "int8"):
        conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        if kind == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        p = out / f"mouth_nose_{kind}.tflite"
        p.write_bytes(conv.convert())
        paths[kind] = p
        print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)", flush=True)
    shutil.copyfile(paths[args.default], out / "mouth_nose.tflite")

    val_x, val_kinds = data["exact"][va], kinds[va]
    ref = face_scores(model, val_x, anchors)
    report = {"weights": str(run / f"{args.weights}.weights.h5"), "default": args.default,
              "input_size": INPUT_SIZE, "params": int(model.count_params()), "flops": mm.flops(model),
              "anchors": anchors.tolist(), "val_faces": int(len(va)), "keras": val_figures(ref, val_kinds)}
    cfg = MouthsConfig(flip_tta="off")  # parity of the raw model; TTA costs one more crop per face
    for kind, p in paths.items():
        det = MouthDetector(cfg, p)
        t0 = time.perf_counter()
        got = np.concatenate([det.raw(val_x[i:i + 1])[1].max(axis=1) for i in range(len(val_x))])
        ms = (time.perf_counter() - t0) * 1000 / len(val_x)
        diff = np.abs(got - ref)
        agree = float(((got[:, 0] >= 0.5) == (ref[:, 0] >= 0.5)).mean())
        report[kind] = {"size_bytes": p.stat().st_size, "ms_per_face_1thread": round(ms, 3),
                        "max_abs_diff": round(float(diff.max()), 4), "mean_abs_diff": round(float(diff.mean()), 5),
                        "mouth_call_agreement@0.5": round(agree, 4), "val": val_figures(got, val_kinds)}
        print(kind, json.dumps(report[kind]), flush=True)
    (out / "mouth_nose_export.json").write_text(json.dumps(report, indent=1))
    ok = report["float32"]["max_abs_diff"] < 1e-3 and report["int8"]["mouth_call_agreement@0.5"] > 0.97
    print("parity", "OK" if ok else "FAILED", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
