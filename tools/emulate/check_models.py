"""Load and run every models/*.tflite through mask_guard's own loaders; print one JSON object.

Run by tools/pi-emulate.sh on this machine and inside the arm64 root file system, then compared by
compare.py. Inputs are computed, not random, so both sides feed the same numbers whatever numpy they have.
"""
from __future__ import annotations

import json
from importlib import metadata
import sys
from pathlib import Path

import numpy as np

from mask_guard import tflite
from mask_guard.config import FacesConfig, MouthsConfig
from mask_guard.faces import WEIGHTS, FaceDetector
from mask_guard.mouths import MouthDetector

MTCNN_SIDE = {"pnet": 48, "rnet": 24, "onet": 48}  # P-Net is fully convolutional: any side >= 12


def fixed_input(shape, dtype) -> np.ndarray:
    """The same array on every platform: a multiplicative hash of the index, scaled to the dtype."""
    n = int(np.prod(shape))
    u = ((np.arange(n, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(1000)).astype(np.float64) / 999.0
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return (info.min + np.round(u * (info.max - info.min))).astype(dtype).reshape(shape)
    return (u * 2.0 - 1.0).astype(dtype).reshape(shape)


def run_model(path: Path) -> dict:
    interp = tflite.load_interpreter(path, num_threads=1, allocate=False)
    inp = interp.get_input_details()[0]
    shape = [int(d) for d in inp["shape_signature"]]
    side = next((s for k, s in MTCNN_SIDE.items() if k in path.name), None)
    shape = [1 if i == 0 and d < 0 else (side if d < 0 else d) for i, d in enumerate(shape)]
    interp.resize_tensor_input(inp["index"], shape, strict=False)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], fixed_input(shape, inp["dtype"]))
    interp.invoke()
    outs = []
    for d in sorted(interp.get_output_details(), key=lambda d: d["name"]):
        a = interp.get_tensor(d["index"])
        scale = float(d["quantization"][0]) if d.get("quantization") else 0.0
        outs.append({"name": d["name"], "dtype": str(a.dtype), "shape": list(a.shape), "quant_scale": scale,
                     "values": a.astype(np.float64).ravel().tolist()})
    return {"input_shape": shape, "input_dtype": str(np.dtype(inp["dtype"])), "outputs": outs}


def main(model_dir: str) -> int:
    model_dir = Path(model_dir)
    name = tflite.runtime_name()
    try:
        name += " " + metadata.version(name.replace("_", "-"))
    except metadata.PackageNotFoundError:
        pass
    report = {"runtime": name, "numpy": np.__version__, "models": {}, "loaders": {}}
    for path in sorted(model_dir.glob("*.tflite")):
        try:
            report["models"][path.name] = run_model(path)
        except Exception as exc:  # reported per model: one bad file must not hide the others
            report["models"][path.name] = {"error": f"{type(exc).__name__}: {exc}"}
    # The daemon's own detector classes on these files (MTCNN weight sets, each mouth model).
    for weights in WEIGHTS:
        try:
            FaceDetector(FacesConfig(weights=weights), model_dir)
            report["loaders"][f"FaceDetector[{weights}]"] = "ok"
        except Exception as exc:
            report["loaders"][f"FaceDetector[{weights}]"] = f"{type(exc).__name__}: {exc}"
    for path in sorted(model_dir.glob("mouth_nose*.tflite")):
        try:
            det = MouthDetector(MouthsConfig(), path)
            crops = fixed_input((2, det.input_size, det.input_size, 3), np.uint8)
            boxes, scores = det.raw(crops)
            report["loaders"][f"MouthDetector[{path.name}]"] = "ok"
            report["models"][path.name]["raw_scores_sum"] = float(np.asarray(scores, np.float64).sum())
        except Exception as exc:
            report["loaders"][f"MouthDetector[{path.name}]"] = f"{type(exc).__name__}: {exc}"
    json.dump(report, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "models"))
