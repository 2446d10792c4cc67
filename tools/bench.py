"""Speed of the daemon at 640x480, against the ``mtcnn`` package (TensorFlow) in the same run; Markdown out.

Usage:
  python tools/bench.py [--reps 30] [--no-reference] [--no-daemon] [--seed 0]

What it measures (medians over ``--reps`` runs after warm-up, same frames for every path):
1. Per stage, on composed 640x480 corridor frames with 0, 1 and 3 faces (~90 px wide, tools/clips.py):
   MTCNN per frame (``FaceDetector.detect``), mouth model per face (``MouthDetector.score_faces`` / faces),
   tracking + votes (``Pipeline`` ``track_ms``), whole frame (``Pipeline.process`` wall time).
2. The same frames through ``mtcnn.MTCNN().detect_faces`` (TensorFlow, same min face size, thresholds and
   scale step) plus the same mouth model on its boxes, and the ratio reference / ours.
3. The daemon itself (``Daemon.run``, as ``mask-guard run`` calls it) on a one-face clip, frame by frame in a
   child process: frames per second end to end (decode + pipeline + alerts/counts), start-up time from
   spawning the process to the first processed frame, and its peak RSS (``ru_maxrss``).
4. Raspberry Pi 4 / 5 estimate: FLOPs of every TFLite model as actually executed per frame (P-Net at each
   pyramid level, R-Net/O-Net per candidate batch, mouth model per face; conv/depthwise/dense MACs x 2 from
   the ops' tensor shapes), the measured TFLite time here (so the rest is Python/numpy/OpenCV time), then
   Pi time = FLOPs / (assumed effective Pi FLOP/s) + rest x (assumed single-core slowdown), with a low/high
   range. The assumptions and their sources are printed with the table.
5. The motion gate and frame sizing (tools/bench_gate.py): the daemon's CPU in real time at 30 fps on a real
   empty entrance (lights switched off and on) and with one and three people, gate on and off; and frame
   work on 1280x720 input with one face, scaled to the source size and at full size.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import clips  # noqa: E402

# Effective fp32 TFLite (XNNPACK, 4 threads) throughput on small convnets, GFLOP/s, (low, high), and the
# single-core slowdown of Python/numpy/OpenCV code against one core of this machine, (low, high).
# Pi 4 (Cortex-A72 4x1.5-1.8 GHz, 128-bit NEON): peak ~96 GFLOP/s fp32; small float convnets reach ~10-20 %.
#   Anchor: MobileNet v2 SSD 300x300 on TFLite, Pi 4 112.6 ms vs Pi 5 23.5 ms (aallan/benchmarking-ml-on-the-edge).
# Pi 5 (Cortex-A76 4x2.4 GHz): 2-3x a Pi 4 on CPU work (Raspberry Pi's own claim), up to ~4.8x on TFLite above.
PI = {
    "Raspberry Pi 4": {"gflops": (8.0, 15.0), "slowdown": (3.5, 5.0)},
    "Raspberry Pi 5": {"gflops": (25.0, 50.0), "slowdown": (1.6, 2.4)},
}


# The package's pyramid runs levels below 12 px (and finds nothing) for min_face_size above ~20 at 480 px
# height, so the comparison runs both paths at its default, 20 px.
REF_MIN_FACE = 20


def ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


# --- FLOPs of a TFLite model from its ops' tensor shapes --------------------------------------------

def tflite_flops(path: Path, input_shape=None) -> float:
    """2 x MACs of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and TRANSPOSE_CONV (the rest is negligible)."""
    # Without the XNNPACK delegate: with it, the delegated intermediate tensors keep stale shapes after a resize.
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # the Pi's tflite_runtime
        from tflite_runtime.interpreter import Interpreter, OpResolverType  # type: ignore

    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    if input_shape is not None:
        it.resize_tensor_input(it.get_input_details()[0]["index"], list(input_shape))
    it.allocate_tensors()
    shapes = {t["index"]: tuple(int(v) for v in t["shape"]) for t in it.get_tensor_details()}
    total = 0.0
    for op in it._get_ops_details():
        name = op["op_name"]
        ins, outs = list(op["inputs"]), list(op["outputs"])
        try:
            out = shapes[outs[0]]
            w = shapes[ins[1]] if len(ins) > 1 and ins[1] >= 0 else None
        except KeyError:
            continue
        if name == "CONV_2D" and w:  # w: (Cout, kh, kw, Cin); out: (B, H, W, Cout)
            total += 2.0 * np.prod(out) * w[1] * w[2] * w[3]
        elif name == "DEPTHWISE_CONV_2D" and w:  # w: (1, kh, kw, C)
            total += 2.0 * np.prod(out) * w[1] * w[2]
        elif name == "FULLY_CONNECTED" and w:  # w: (out, in)
            total += 2.0 * np.prod(out) * w[1]
        elif name == "TRANSPOSE_CONV":
            w = shapes[ins[1]]
            total += 2.0 * np.prod(shapes[ins[2]]) * w[0] * w[1] * w[2]
    return float(total)


class _Timed:
    """Wraps a callable: counts calls, accumulates seconds and the input shapes it saw (for FLOPs)."""

    def __init__(self, fn):
        self.fn, self.seconds, self.shapes = fn, 0.0, []

    def __call__(self, x, *a, **k):
        t = time.perf_counter()
        try:
            return self.fn(x, *a, **k)
        finally:
            self.seconds += time.perf_counter() - t
            self.shapes.append(tuple(np.shape(x)))


# --- our pipeline -------------------------------------------------------------------------------

def bench_ours(frames: dict[int, np.ndarray], reps: int, weights: str | None = None) -> dict:
    from mask_guard.config import Config, models_dir, resource_path
    from mask_guard.detections import Frame
    from mask_guard.pipeline import Pipeline, to_rgb

    cfg = Config()
    if weights:
        cfg.faces.weights = weights
    t0 = time.perf_counter()
    pipe = Pipeline(cfg)
    load_s = time.perf_counter() - t0
    faces, mouths = pipe.analyzer.faces, pipe.analyzer.mouths
    out = {"load_s": load_s, "rows": {}, "min_face_px": cfg.faces.min_face_px,
           "mouth_model": resource_path(cfg.mouths.model, "models"),
           "mtcnn_dir": models_dir(cfg)}
    for n, img in frames.items():
        rgb = to_rgb(img)
        error = None
        try:
            for _ in range(3):
                pipe.process(Frame(img, 0, time.monotonic()))
        except Exception as exc:  # report the whole-frame cells as failed, keep measuring the stages
            error = f"{type(exc).__name__}: {exc}"
        det_s, mouth_s, track_ms, whole_s = [], [], [], []
        found = []
        for i in range(reps):
            t = time.perf_counter()
            d = faces.detect(rgb)
            det_s.append(time.perf_counter() - t)
            found.append(len(d))
            if len(d):
                t = time.perf_counter()
                mouths.score_faces(rgb, d)
                mouth_s.append((time.perf_counter() - t) / len(d))
            if error is None:
                t = time.perf_counter()
                r = pipe.process(Frame(img, i, time.monotonic()))
                whole_s.append(time.perf_counter() - t)
                track_ms.append(r.timings["track_ms"])
        out["rows"][n] = {"faces_found": statistics.median(found), "mtcnn_ms": ms(det_s),
                          "mouth_ms_per_face": ms(mouth_s) if mouth_s else None,
                          "track_ms": statistics.median(track_ms) if track_ms else None,
                          "frame_ms": ms(whole_s) if whole_s else None, "error": error}
    # TFLite time and executed FLOPs for one frame of each kind (wrapping the nets' run calls)
    for n, img in frames.items():
        rgb = to_rgb(img)
        wraps = {k: _Timed(getattr(faces, k).run) for k in ("pnet", "rnet", "onet")}
        for k, w in wraps.items():
            setattr(getattr(faces, k), "run", w)
        mw = _Timed(mouths.raw)
        mouths.raw = mw
        try:
            t = time.perf_counter()
            for _ in range(5):
                d = faces.detect(rgb)
                if len(d):
                    mouths.score_faces(rgb, d)
            total = (time.perf_counter() - t) / 5
        finally:
            for k in wraps:
                del getattr(faces, k).run
            del mouths.raw
        pnet_shapes = wraps["pnet"].shapes[: len(wraps["pnet"].shapes) // 5]  # one detect call's pyramid
        flops = sum(tflite_flops(out["mtcnn_dir"] / "mtcnn_pnet.tflite", s) for s in pnet_shapes)
        for k, f in (("rnet", "mtcnn_rnet.tflite"), ("onet", "mtcnn_onet.tflite")):
            rows = sum(s[0] for s in wraps[k].shapes) / 5
            if rows:
                flops += rows * tflite_flops(out["mtcnn_dir"] / f, (1,) + wraps[k].shapes[0][1:])
        mrows = sum(s[0] for s in mw.shapes) / 5
        if mrows:
            flops += mrows * tflite_flops(out["mouth_model"])
        nn_s = (sum(w.seconds for w in wraps.values()) + mw.seconds) / 5
        out["rows"][n].update(flops=flops, nn_ms=nn_s * 1e3, detect_mouth_ms=total * 1e3)
    out["mouth_flops"] = tflite_flops(out["mouth_model"])
    return out


# --- the reference: mtcnn package (TensorFlow) + the same mouth model ----------------------------

def bench_reference(frames: dict[int, np.ndarray], reps: int, min_face_px: int = 20) -> dict:
    """The package path and ours doing the same work (ours before and after the package, so both see the
    same load from anything else on the machine): face detection + the same mouth model on every face found."""
    from mask_guard.config import Config, models_dir, resource_path
    from mask_guard.detections import Detections
    from mask_guard.faces import FaceDetector
    from mask_guard.mouths import MouthDetector
    from mask_guard.pipeline import to_rgb

    cfg = Config()
    cfg.faces.min_face_px = min_face_px
    faces = FaceDetector(cfg.faces, models_dir(cfg))
    mouths = MouthDetector(cfg.mouths, resource_path(cfg.mouths.model, "models"))
    t0 = time.perf_counter()
    from mtcnn import MTCNN  # imports TensorFlow

    det = MTCNN()
    load_s = time.perf_counter() - t0
    kw = dict(min_face_size=min_face_px, scale_factor=cfg.faces.scale_factor,
              threshold_pnet=cfg.faces.thresholds[0], threshold_rnet=cfg.faces.thresholds[1],
              threshold_onet=cfg.faces.thresholds[2])

    def package(img):
        rgb = to_rgb(img)
        res = det.detect_faces(rgb, **kw)
        boxes = np.array([[r["box"][0], r["box"][1], r["box"][0] + r["box"][2], r["box"][1] + r["box"][3]]
                          for r in res], np.float32).reshape(-1, 4)
        if len(boxes):
            mouths.score_faces(rgb, Detections(boxes, np.ones(len(boxes), np.float32)))
        return len(boxes)

    def ours(img):
        rgb = to_rgb(img)
        d = faces.detect(rgb)
        if len(d):
            mouths.score_faces(rgb, d)
        return len(d)

    def block(fn, img, n_reps, times, found):
        for _ in range(n_reps):
            t = time.perf_counter()
            found.append(fn(img))
            times.append(time.perf_counter() - t)

    rows = {}
    for n, img in frames.items():
        for _ in range(3):
            package(img), ours(img)
        # A-B-A blocks, not alternating calls: TensorFlow's worker threads keep spinning for a while after
        # each call and would slow down whatever runs right after them.
        t_ref, t_ours, f_ref, f_ours = [], [], [], []
        block(ours, img, reps // 2, t_ours, f_ours)
        block(package, img, reps, t_ref, f_ref)
        time.sleep(0.5)
        block(ours, img, reps - reps // 2, t_ours, f_ours)
        rows[n] = {"ref_ms": ms(t_ref), "ours_ms": ms(t_ours), "ref_found": statistics.median(f_ref),
                   "ours_found": statistics.median(f_ours)}
    return {"load_s": load_s, "rows": rows, "min_face_px": min_face_px}


# --- the daemon on a clip -------------------------------------------------------------------------

def bench_daemon(seed: int) -> dict:
    import latency

    clip = clips.make_clip("one_face_steady", seed=seed)
    work = Path(tempfile.mkdtemp(prefix="mask-guard-bench-"))
    res = latency.run_on_clip(clip, work)
    if res.returncode != 0:
        raise RuntimeError(f"daemon exited {res.returncode}:\n{res.log[-3000:]}")
    ev = res.events
    faces_per_frame = statistics.median(len(e["faces"]) for e in ev)
    return {
        "frames": len(ev), "faces_median": faces_per_frame,
        "loop_fps": res.loop_fps(), "frame_work_fps": res.processing_fps(),
        "startup_s": ev[0]["t"] - res.header["t_spawn"] if "t_spawn" in res.header else None,
        "startup_after_python_s": ev[0]["t"] - res.header["t_start"],
        "maxrss_mb": res.trailer.get("maxrss_kb", 0) / 1024.0,
        "alerts": len(res.alerts()),
    }


# --- report -------------------------------------------------------------------------------------

def _f(v, nd=1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-reference", action="store_true", help="skip the mtcnn package (TensorFlow) path")
    ap.add_argument("--no-daemon", action="store_true", help="skip the daemon run on a clip")
    ap.add_argument("--mqtt", action="store_true", help="only the frame loop with MQTT off vs on (tools/bench_mqtt.py)")
    ap.add_argument("--no-gate", action="store_true", help="skip the motion gate and 720p runs (tools/bench_gate.py)")
    ap.add_argument("--gate-seconds", type=float, default=20.0, help="length of the empty-entrance runs")
    ap.add_argument("--faces-weights", choices=["masks", "stock"], help="MTCNN weights of our pipeline (default: the config's)")
    a = ap.parse_args(argv)
    if a.mqtt:
        import bench_mqtt

        return bench_mqtt.main(["--seed", str(a.seed)])

    frames = {n: clips.still_frame(n, seed=a.seed) for n in (0, 1, 3)}
    daemon = None if a.no_daemon else bench_daemon(a.seed)  # first: a clean machine for its RSS/start-up
    gate = None if a.no_gate else bench_gate_runs(a.gate_seconds, a.reps, a.seed)  # before TensorFlow's threads
    ours = bench_ours(frames, a.reps, a.faces_weights)
    ref = None if a.no_reference else bench_reference(frames, a.reps, REF_MIN_FACE)

    print(f"## mask-guard benchmark ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, 640x480, median of {a.reps})\n")
    print("| faces in frame | found | MTCNN per frame (ms) | mouth model per face (ms) | tracking+votes (ms) | "
          "whole frame (ms) | fps (frame work) |")
    print("|---|---|---|---|---|---|---|")
    for n, r in ours["rows"].items():
        whole = "failed: " + r["error"] if r["error"] else f"{r['frame_ms']:.1f}"
        fps = "-" if r["error"] else f"{1000 / r['frame_ms']:.0f}"
        print(f"| {n} | {r['faces_found']:.0f} | {r['mtcnn_ms']:.1f} | {_f(r['mouth_ms_per_face'], 2)} | "
              f"{_f(r['track_ms'], 2)} | {whole} | {fps} |")
    if ref:
        print(f"\nSame work on the same frames (A-B-A blocks), both at min face {REF_MIN_FACE} px, "
              "thresholds 0.6/0.7/0.7, scale step 0.709: face detection + the same mouth model on every face.\n")
        print("| faces in frame | ours: TFLite MTCNN + mouth (ms) | mtcnn package (TensorFlow) + mouth (ms) | "
              "faces found (ours / package) | package / ours |")
        print("|---|---|---|---|---|")
        for n, rr in ref["rows"].items():
            print(f"| {n} | {rr['ours_ms']:.1f} | {rr['ref_ms']:.1f} | {rr['ours_found']:.0f} / "
                  f"{rr['ref_found']:.0f} | {rr['ref_ms'] / rr['ours_ms']:.1f}x |")
        one = ours["rows"][1]
        if one["frame_ms"]:
            print(f"\nThe daemon's whole frame (default config, min face {ours['min_face_px']} px, with tracking) "
                  f"with one face: {one['frame_ms']:.1f} ms against {ref['rows'][1]['ref_ms']:.1f} ms for the "
                  f"package path: {ref['rows'][1]['ref_ms'] / one['frame_ms']:.1f}x.")
    print(f"\nmodel load: ours {ours['load_s']:.2f} s; mtcnn package (import TensorFlow + build) "
          f"{_f(ref['load_s'], 2) if ref else '-'} s")
    if daemon:
        print("\n| daemon on a clip (one face, 640x480, frame by frame) | value |\n|---|---|")
        print(f"| frames processed | {daemon['frames']} (median {daemon['faces_median']:.0f} face/frame, "
              f"{daemon['alerts']} alert) |")
        print(f"| frames per second end to end (decode + pipeline + alerts/counts) | {daemon['loop_fps']:.1f} |")
        print(f"| frames per second, frame work only | {daemon['frame_work_fps']:.1f} |")
        print(f"| start-up: process spawn -> first processed frame | {_f(daemon['startup_s'], 2)} s |")
        print(f"| start-up after the interpreter is up | {daemon['startup_after_python_s']:.2f} s |")
        print(f"| peak RSS of the daemon process | {daemon['maxrss_mb']:.0f} MB |")
    print("\n### Raspberry Pi estimate (one frame, 640x480)\n")
    print("| faces | MFLOP per frame | TFLite ms here | other ms here | GFLOP/s here | " +
          " | ".join(f"{k} ms (low-high)" for k in PI) + " |")
    print("|---|---|---|---|---|" + "---|" * len(PI))
    for n, r in ours["rows"].items():
        whole_ms = r["frame_ms"] if r["frame_ms"] is not None else r["detect_mouth_ms"]
        other = max(whole_ms - r["nn_ms"], 0.0)
        cells = []
        for k, p in PI.items():
            lo = r["flops"] / (p["gflops"][1] * 1e9) * 1e3 + other * p["slowdown"][0]
            hi = r["flops"] / (p["gflops"][0] * 1e9) * 1e3 + other * p["slowdown"][1]
            cells.append(f"{lo:.0f}-{hi:.0f} ({1000 / hi:.0f}-{1000 / lo:.0f} fps)")
        print(f"| {n} | {r['flops'] / 1e6:.0f} | {r['nn_ms']:.1f} | {other:.1f} | "
              f"{r['flops'] / max(r['nn_ms'], 1e-6) / 1e6:.1f} | " + " | ".join(cells) + " |")
    print(f"\nmouth model: {ours['mouth_flops'] / 1e6:.1f} MFLOP per face. Method: Pi time = executed FLOPs / "
          "effective Pi throughput + non-TFLite time here x single-core slowdown; assumed "
          + "; ".join(f"{k}: {p['gflops'][0]:.0f}-{p['gflops'][1]:.0f} GFLOP/s, slowdown "
                      f"{p['slowdown'][0]}-{p['slowdown'][1]}x" for k, p in PI.items())
          + ". Anchors: MobileNet v2 SSD on TFLite 112.6 ms (Pi 4) / 23.5 ms (Pi 5), aallan/benchmarking-ml-on-"
            "the-edge; Cortex-A72/A76 peak fp32 ~96/154 GFLOP/s. Uncertainty: about 2x either way.")
    if gate:
        import bench_gate

        bench_gate.report(*gate, a.gate_seconds)
    return 0


def bench_gate_runs(seconds: float, reps: int, seed: int) -> tuple:
    """(real-time rows, 720p figures) of tools/bench_gate.py, each daemon run in a child of its own."""
    import bench_gate

    return bench_gate.bench_gate(seconds, seed), bench_gate.bench_sized(reps, seed)


if __name__ == "__main__":
    sys.exit(main())
