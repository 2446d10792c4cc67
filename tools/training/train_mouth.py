#!/usr/bin/env python3
"""Train the Tiny-YOLO mouth/nose/mask detector on .cache/mouth/dataset.npz (tools/training/build_mouth_dataset.py).

CPU only (set --threads to what you may use). Each epoch draws --samples augmented training crops,
then scores the validation split on the daemon's exact crops (no augmentation) and logs:
loss parts, face-level mouth recall on unmasked faces, mouth false positives on masked faces
(correct or below the nose), nose recall / false positives, at score 0.5. The epoch with the best
validation figure is kept.  Writes .cache/mouth/run/ (weights, anchors) and, with --models,
models/mouth_nose_training.csv + .png.

    .venv/bin/python tools/training/train_mouth.py --epochs 12 --threads 2
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mouth_common import CACHE, INPUT_SIZE, MODELS, load_meta  # noqa: E402


def kmeans_anchors(wh: np.ndarray, k: int = 4, iters: int = 30, seed: int = 0) -> np.ndarray:
    """k-means on (w, h) with 1 - IoU distance; sorted largest first (coarse head first)."""
    rng = np.random.default_rng(seed)
    cent = wh[rng.choice(len(wh), k, replace=False)]
    for _ in range(iters):
        inter = np.minimum(wh[:, None, 0], cent[None, :, 0]) * np.minimum(wh[:, None, 1], cent[None, :, 1])
        iou = inter / (wh[:, None, 0] * wh[:, None, 1] + cent[None, :, 0] * cent[None, :, 1] - inter)
        a = iou.argmax(1)
        cent = np.array([np.median(wh[a == j], 0) if (a == j).any() else cent[j] for j in range(k)])
    return cent[np.argsort(-cent.prod(1))].astype(np.float32)


def face_scores(model, crops: np.ndarray, anchors, batch: int = 256) -> np.ndarray:
    import mouth_model as mm
    import tensorflow as tf

    out = []
    for i in range(0, len(crops), batch):
        x = tf.constant(crops[i:i + batch].astype(np.float32) / 255.0)
        _, s = mm.decode(model(x, training=False), INPUT_SIZE, anchors)
        out.append(tf.reduce_max(s, axis=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)


def val_figures(scores: np.ndarray, kinds: np.ndarray, thr: float = 0.5) -> dict:
    both, nose, none = kinds == "both", kinds == "nose", (kinds == "none") | (kinds == "rmfd")
    bg = kinds == "bg"
    rate = lambda sel, c: float((scores[sel, c] >= thr).mean()) if sel.any() else float("nan")  # noqa: E731
    f = {
        "mouth_recall": rate(both, 0),
        "mouth_fp_masked": rate(none, 0),
        "mouth_fp_nose_out": rate(nose, 0),
        "nose_recall": rate(both | nose, 1),
        "nose_fp_masked": rate(none, 1),
        "mask_recall": rate(none | nose, 2),
        "mask_fp_unmasked": rate(both, 2),
        # a false face (no annotated face there) should show neither a mouth nor a mask
        "bg_called": float(((scores[bg, 0] >= thr) | (scores[bg, 2] >= thr)).mean()) if bg.any() else float("nan"),
    }
    # one number to keep the best epoch by: balanced mouth accuracy + half the nose and mask ones
    f["score"] = ((f["mouth_recall"] - f["mouth_fp_masked"]) + 0.5 * (f["nose_recall"] - f["nose_fp_masked"])
                  + 0.5 * (f["mask_recall"] - f["mask_fp_unmasked"]))
    return f


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for k in ("loss", "box", "obj", "cls"):
        ax[0].plot(ep, [r[k] for r in rows], label=k)
    ax[0].set_xlabel("epoch"); ax[0].set_title("training loss"); ax[0].legend()  # noqa: E702
    for k in ("mouth_recall", "mouth_fp_masked", "mouth_fp_nose_out", "nose_recall", "nose_fp_masked",
              "mask_recall", "mask_fp_unmasked", "bg_called"):
        ax[1].plot(ep, [r[k] for r in rows], label=k, marker=".")
    ax[1].set_xlabel("epoch"); ax[1].set_title("validation (face level, score >= 0.5)")  # noqa: E702
    ax[1].set_ylim(0, 1); ax[1].legend(fontsize=7); ax[1].grid(alpha=0.3)  # noqa: E702
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--samples", type=int, default=12000, help="augmented crops per epoch")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=float, default=0.75, help="channel multiplier")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(CACHE / "run"))
    ap.add_argument("--models", action="store_true", help="write the log and plot into models/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="continue from last.weights.h5 and training.csv")
    ap.add_argument("--hard", action="store_true", help="stronger augmentation for the scene misses "
                    "(turned/tilted heads, box jitter, harder blur, occluders at the mouth edge)")
    ap.add_argument("--mouth-pos-weight", type=float, default=1.0, help="objectness weight of mouth positives "
                    "(> 1 leans toward alarm recall)")
    ap.add_argument("--init", help="start from these weights (e.g. a previous run's best.weights.h5)")
    ap.add_argument("--freeze-bn", action="store_true", help="keep batch normalisation as it is (inference mode), e.g. "
                    "for weights recovered from a .tflite (tools/training/recover_mouth.py), whose BN is folded away")
    args = ap.parse_args()

    import tensorflow as tf
    import keras

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import mouth_model as mm
    from mouth_augment import augment

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = np.load(CACHE / "dataset.npz")
    meta = load_meta()  # rows excluded by tools/training/mouth_clean.py have kind 'excluded'
    split = np.array([m["split"] for m in meta])
    kinds = np.array([m["kind"] for m in meta])
    src = np.array([m["source"] for m in meta])
    keep = kinds != "excluded"
    tr, va = np.nonzero((split == "train") & keep)[0], np.nonzero((split == "val") & keep)[0]
    ctx, lab_ctx = data["ctx"], data["lab_ctx"]
    val_x, val_kinds = data["exact"][va], kinds[va]
    print(f"train {len(tr)} val {len(va)}", flush=True)

    # sampling weights: UTKFace's 6000 look alike (aligned, studio-ish); rarer hard cases count more
    w = np.ones(len(tr))
    w[src[tr] == "utkface"] = 0.5
    w[kinds[tr] == "nose"] = 2.0
    w[src[tr] == "rmfd"] = 1.5
    # real scene faces and the mask-type photos are the target domain: weigh them up
    w[np.isin(src[tr], ["ilc2021", "ilc2021_more", "macwin"])] = 2.5
    w[src[tr] == "masktypes"] = 2.0
    w[kinds[tr] == "bg"] = 0.5  # true non-faces (walls, foliage): a few per batch
    w /= w.sum()

    lab_exact = data["lab_exact"][tr]
    wh = np.concatenate([(lab_exact[:, c, 2:] - lab_exact[:, c, :2]) for c in range(lab_exact.shape[1])])
    wh = wh[np.isfinite(wh).all(1)]
    anchors = kmeans_anchors(wh, 2 * mm.NA)
    print("anchors", anchors.round(3).tolist(), flush=True)
    (out / "anchors.json").write_text(json.dumps({"anchors": anchors.tolist(), "width": args.width,
                                                  "input_size": INPUT_SIZE}))

    model = mm.build_model(INPUT_SIZE, args.width)
    if args.init:
        model.load_weights(args.init)
        prev = json.loads((Path(args.init).parent / "anchors.json").read_text())["anchors"]
        anchors = np.array(prev, np.float32)  # the heads were trained for these anchors
        (out / "anchors.json").write_text(json.dumps({"anchors": anchors.tolist(), "width": args.width,
                                                      "input_size": INPUT_SIZE, "init": args.init}))
    if args.freeze_bn:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False  # Keras 3: a frozen BN also normalises with its moving statistics
    print(f"params {model.count_params()} FLOPs {mm.flops(model) / 1e6:.1f} M", flush=True)
    steps = args.samples // args.batch
    sched = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=steps * args.epochs, alpha=0.02,
                                                   warmup_target=None)
    opt = keras.optimizers.Adam(sched)

    @tf.function(reduce_retracing=True)
    def train_step(x, t1, t2):
        with tf.GradientTape() as tape:
            raws = model(x, training=True)
            lb, lo, lc = mm.yolo_loss(raws, [t1, t2], INPUT_SIZE, anchors, args.mouth_pos_weight)
            loss = lb + lo + lc
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, lb, lo, lc

    rng = np.random.default_rng(args.seed)

    def make_batch(idx: np.ndarray):
        xs, ls = [], []
        for i in idx:
            img, b = augment(rng, ctx[i], lab_ctx[i].copy(), INPUT_SIZE, hard=args.hard)
            xs.append(img)
            ls.append(b)
        x = np.stack(xs).astype(np.float32) / 255.0
        return (x, *mm.build_targets(np.stack(ls), INPUT_SIZE, anchors))

    rows, best, first = [], -1e9, 1
    t_start = time.time()
    if args.resume and (out / "last.weights.h5").exists():
        model.load_weights(out / "last.weights.h5")
        with open(out / "training.csv") as f:
            rows = [{k: (float(v) if k != "epoch" else int(v)) for k, v in r.items()} for r in csv.DictReader(f)]
        best = max(r["score"] for r in rows)
        first = len(rows) + 1
        opt.iterations.assign(steps * len(rows))  # the learning-rate schedule picks up where it was
        t_start -= rows[-1]["elapsed_s"]
        print(f"resumed after epoch {len(rows)}", flush=True)
    for epoch in range(first, args.epochs + 1):
        t0 = time.time()
        order = rng.choice(tr, size=steps * args.batch, p=w)
        batches = order.reshape(steps, args.batch)
        nxt: dict = {}

        def prefetch(k):  # augmentation (OpenCV, GIL released) overlaps the TF step
            nxt[k] = make_batch(batches[k])

        th = threading.Thread(target=prefetch, args=(0,))
        th.start()
        sums = np.zeros(4)
        for k in range(steps):
            th.join()
            x, t1, t2 = nxt.pop(k)
            if k + 1 < steps:
                th = threading.Thread(target=prefetch, args=(k + 1,))
                th.start()
            vals = train_step(tf.constant(x), tf.constant(t1), tf.constant(t2))
            sums += np.array([float(v) for v in vals])
            if k % 50 == 0:
                print(f"  epoch {epoch} step {k}/{steps} loss {sums[0] / (k + 1):.4f}", flush=True)
        sums /= steps
        scores = face_scores(model, val_x, anchors)
        fig = val_figures(scores, val_kinds)
        row = {"epoch": epoch, "loss": sums[0], "box": sums[1], "obj": sums[2], "cls": sums[3], **fig,
               "epoch_s": time.time() - t0, "elapsed_s": time.time() - t_start}
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        if fig["score"] > best:
            best = fig["score"]
            model.save_weights(out / "best.weights.h5")
            np.save(out / "val_scores.npy", scores)
        model.save_weights(out / "last.weights.h5")
        with open(out / "training.csv", "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows([{k: round(v, 5) if isinstance(v, float) else v for k, v in r.items()} for r in rows])
        plot(rows, out / "training.png")
    if args.models:
        MODELS.mkdir(exist_ok=True)
        (MODELS / "mouth_nose_training.csv").write_text((out / "training.csv").read_text())
        plot(rows, MODELS / "mouth_nose_training.png")
    print(f"done in {time.time() - t_start:.0f}s; best validation figure {best:.4f}", flush=True)


if __name__ == "__main__":
    main()
