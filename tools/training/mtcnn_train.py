"""Fine-tune the ``mtcnn`` package's R-Net or O-Net on mined crops (tools/training/mtcnn_mine.py).

Starts from the package's shipped weights (same Keras classes, so the same architecture) and trains the
classic MTCNN multi-task loss:

* face/not-face cross-entropy on positives and negatives, each class weighted to half the loss (the mined
  negatives outnumber positives 3:1, and unannotated faces among them: unbalanced, the nets grew too strict);
  ``--ohem`` instead: the classic online hard example mining (mean of the hardest 70%, unbalanced);
* box offsets (MSE) on positives and part faces, weight 0.5;
* O-Net landmarks (MSE) on positives and part faces, weight 1.0, against the stock O-Net's own landmarks
  (distillation; for synthetic masks, its landmarks on the same face unmasked), so they stay as good.

Augmentation: mirror (offsets and landmarks mirrored, left/right points swapped), brightness/contrast.
One TensorFlow thread; stops after --minutes. Weights go to .cache/mtcnn/<net>_weights.npz (the last
epoch), for tools/training/export_mtcnn.py --weights masks.

    .venv/bin/python tools/training/mtcnn_train.py --net onet --minutes 12
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402

from mtcnn_common import CACHE  # noqa: E402

W_BOX, W_LM = 0.5, 1.0
MIRROR_LM = [1, 0, 2, 4, 3]  # left eye <-> right eye, mouth left <-> mouth right


def augment(x, off, lm, rng):
    """Mirror half the batch and jitter brightness/contrast; x is uint8 (N, S, S, 3)."""
    x = x.astype(np.float32)
    flip = rng.random(len(x)) < 0.5
    x[flip] = x[flip, :, ::-1]
    off = off.copy()
    off[flip] = np.stack([-off[flip, 2], off[flip, 1], -off[flip, 0], off[flip, 3]], 1)
    lm = lm.copy()
    lx, ly = lm[flip, :5], lm[flip, 5:]
    lm[flip, :5] = 1.0 - lx[:, MIRROR_LM]
    lm[flip, 5:] = ly[:, MIRROR_LM]
    a = rng.uniform(0.75, 1.25, (len(x), 1, 1, 1))
    b = rng.uniform(-20, 20, (len(x), 1, 1, 1))
    x = np.clip((x - 127.5) * a + 127.5 + b, 0, 255)
    return ((x - 127.5) / 128.0).astype(np.float32), off.astype(np.float32), lm.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", required=True, choices=["rnet", "onet"])
    ap.add_argument("--minutes", type=float, default=12)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ohem", action="store_true", help="hard example mining instead of the balanced loss")
    ap.add_argument("--init", type=Path, help="start from these weights (.npz) instead of the package's")
    args = ap.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.random.set_seed(args.seed)
    from export_mtcnn import keras_net

    d = np.load(CACHE / f"{args.net}_data.npz")
    x, cls, off, lm, lm_w = d["x"], d["cls"].astype(np.int32), d["off"], d["lm"], d["lm_w"]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(x))
    n_val = max(1, len(x) // 20)
    val, tr = order[:n_val], order[n_val:]
    net = keras_net(args.net, args.init)
    opt = tf.keras.optimizers.Adam(args.lr)
    onet = args.net == "onet"

    def losses(xb, cb, ob, lb, wb, training):
        outs = net(xb, training=training)
        reg, prob = outs[0], outs[-1]
        y = tf.cast(tf.maximum(cb, 0), tf.int32)
        ce = -tf.math.log(tf.clip_by_value(tf.gather(prob, y, batch_dims=1), 1e-7, 1.0))
        pos, neg = tf.cast(cb == 1, tf.float32), tf.cast(cb == 0, tf.float32)
        if args.ohem:
            k = tf.maximum(tf.cast(tf.reduce_sum(pos + neg) * 0.7, tf.int32), 1)
            l_cls = tf.reduce_mean(tf.math.top_k(ce * (pos + neg), k).values)
        else:
            l_cls = 0.5 * (tf.reduce_sum(ce * pos) / tf.maximum(tf.reduce_sum(pos), 1)
                           + tf.reduce_sum(ce * neg) / tf.maximum(tf.reduce_sum(neg), 1))
        has_box = tf.cast(cb != 0, tf.float32)
        l_box = tf.reduce_sum(tf.reduce_sum((reg - ob) ** 2, 1) * has_box) / tf.maximum(tf.reduce_sum(has_box), 1)
        l_lm = tf.constant(0.0)
        if onet:
            l_lm = tf.reduce_sum(tf.reduce_sum((outs[1] - lb) ** 2, 1) * wb) / tf.maximum(tf.reduce_sum(wb), 1)
        return l_cls, l_box, l_lm

    @tf.function(reduce_retracing=True)
    def step(xb, cb, ob, lb, wb):
        with tf.GradientTape() as tape:
            l_cls, l_box, l_lm = losses(xb, cb, ob, lb, wb, True)
            total = l_cls + W_BOX * l_box + W_LM * l_lm
        grads = tape.gradient(total, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return l_cls, l_box, l_lm

    def evaluate():
        xs = ((x[val].astype(np.float32) - 127.5) / 128.0)
        l_cls, l_box, l_lm = (float(v) for v in losses(xs, cls[val], off[val], lm[val], lm_w[val], False))
        prob = net(xs, training=False)[-1].numpy()[:, 1]
        c = cls[val]
        acc = float(((prob > 0.5) == (c == 1))[c >= 0].mean())
        return {"cls": round(l_cls, 4), "box": round(l_box, 5), "lm": round(l_lm, 6), "acc": round(acc, 4),
                "pos_recall@0.7": round(float((prob[c == 1] > 0.7).mean()), 4),
                "neg_pass@0.7": round(float((prob[c == 0] > 0.7).mean()), 4)}

    log = [{"epoch": 0, **evaluate()}]
    print(f"{args.net}: {len(tr)} train / {len(val)} val crops; before: {log[-1]}", flush=True)
    t0 = time.time()
    out = CACHE / f"{args.net}_weights.npz"
    for epoch in range(1, args.epochs + 1):
        perm = rng.permutation(tr)
        for a in range(0, len(perm) - args.batch + 1, args.batch):
            idx = np.sort(perm[a:a + args.batch])
            xb, ob, lb = augment(x[idx], off[idx], lm[idx], rng)
            step(xb, cls[idx], ob, lb, lm_w[idx])
            if time.time() - t0 > args.minutes * 60:
                break
        log.append({"epoch": epoch, "s": round(time.time() - t0), **evaluate()})
        print(log[-1], flush=True)
        np.savez(out, *net.get_weights())
        if time.time() - t0 > args.minutes * 60:
            break
    (CACHE / f"{args.net}_train_log.json").write_text(json.dumps(log, indent=1))
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
