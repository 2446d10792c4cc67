"""Fine-tune the ``mtcnn`` package's P-Net, R-Net or O-Net on mined crops (tools/training/mtcnn_mine.py).

Starts from the package's shipped weights (same Keras classes, so the same architecture) and trains the
classic MTCNN multi-task loss:

* face/not-face cross-entropy on positives and negatives, each class weighted to half the loss (the mined
  negatives outnumber positives 3:1, and unannotated faces among them: unbalanced, the nets grew too strict);
  ``--ohem`` instead: the classic online hard example mining (mean of the hardest 70%, unbalanced);
* box offsets (MSE) on positives and part faces, weight 0.5;
* O-Net landmarks (MSE) on positives and part faces, weight 1.0, against the stock O-Net's own landmarks
  (distillation; for synthetic masks, its landmarks on the same face unmasked), so they stay as good.

Second fine-tune (``--data _v2 --distill 1``): the mined crops carry a ``kind`` (mtcnn_mine.KINDS), and

* ``--balance-kinds``: the positives' half of the loss is split evenly between real unmasked faces and
  masked ones (real or synthetic), whatever their counts;
* ``--distill W``: the stock net (the package's weights, on the same augmented batch) is a teacher where
  it must stay right: on real unmasked faces (positives it scores > 0.5, and part faces) and plain negatives
  (background, cascade negatives, lower-face boxes it scores < 0.5) a cross-entropy towards its face
  probability, and on those faces an MSE towards its box, both weighted W. Masked faces, and masks off a
  face, learn from the labels alone.

Third fine-tune: ``--init`` continues from a fine-tuned net (a fresh optimizer; the teacher stays stock), and
``--hard-pos W`` weighs the masked positives (real or synthetic, any wearing) that the starting net scores
below ``--hard-below`` (its own threshold, default 0.6) W times in the masked half of the loss: those are the
faces the cascade still loses at R-Net; the unmasked half and the distillation are unchanged.
``--part-pos IOU``: masked part faces whose box target overlaps the crop with IoU >= IOU count as positives
(the classic recipe ignores part faces in the face loss; on the dev parts most masked faces R-Net loses have
no P-Net candidate above IoU 0.6, and the fine-tuned R-Net passed 77% of such masked crops, 84% of unmasked).

``--box-only`` (tried for P-Net): the face score is distilled from the stock net on every crop, so the net
keeps its candidates, and only the boxes learn from the labels (masked faces' boxes placed for R-Net).

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
from mask_guard.faces import normalize  # noqa: E402  (the runtime's input scaling)

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


def heads(net, xb, training: bool = False) -> list:
    """The net's outputs as (N, K) tensors: P-Net, fully convolutional, gives (N, 1, 1, K) on a 12 px crop."""
    import tensorflow as tf

    return [tf.reshape(o, [tf.shape(o)[0], -1]) for o in net(xb, training=training)]


def onet_features(net, xs: np.ndarray) -> np.ndarray:
    """O-Net's 256-d features (after prelu5), which its three heads read; the package's call() order."""
    h = xs
    for layer in (net.conv1, net.prelu1, net.maxpool1, net.conv2, net.prelu2, net.maxpool2, net.conv3, net.prelu3,
                  net.maxpool3, net.conv4, net.prelu4, net.permute, net.flatten, net.fc5, net.prelu5):
        h = layer(h)
    return h.numpy().astype(np.float64)


def refit_landmarks(net, x: np.ndarray, lm: np.ndarray, lm_w: np.ndarray, ridge: float = 1.0) -> None:
    """Least-squares re-fit of O-Net's landmark layer (fc6-2, 256 -> 10) on its own features, towards the
    distilled landmark targets of the weighted (positive / part face) crops, mirrored copies included.

    Why: fine-tuning the shared layers for masked faces moved the landmarks away from the stock ones
    (udacity68 error 8.2% -> 9.9%) while the landmark loss barely moved with training; the face score and
    box layers read the same features but are not touched, so the cascade's detections stay exactly the same.
    """
    sel = np.nonzero(lm_w > 0)[0]
    feats, tgts = [], []
    for a in range(0, len(sel), 512):
        idx = sel[a:a + 512]
        xb = normalize(x[idx])
        t = lm[idx].astype(np.float64)
        tm = t.copy()
        tm[:, :5] = 1.0 - t[:, :5][:, MIRROR_LM]
        tm[:, 5:] = t[:, 5:][:, MIRROR_LM]
        feats += [onet_features(net, xb), onet_features(net, np.ascontiguousarray(xb[:, :, ::-1]))]
        tgts += [t, tm]
    f = np.concatenate(feats)
    f = np.hstack([f, np.ones((len(f), 1))])
    t = np.concatenate(tgts)
    reg = ridge * np.eye(f.shape[1])
    reg[-1, -1] = 0.0  # no penalty on the bias
    w = np.linalg.solve(f.T @ f + reg, f.T @ t)
    net.fc6_2.set_weights([w[:-1].astype(np.float32), w[-1].astype(np.float32)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", required=True, choices=["pnet", "rnet", "onet"])
    ap.add_argument("--minutes", type=float, default=12)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ohem", action="store_true", help="hard example mining instead of the balanced loss")
    ap.add_argument("--init", type=Path, help="start from these weights (.npz) instead of the package's")
    ap.add_argument("--data", default="", help="read <net>_data<DATA>.npz (e.g. _v2)")
    ap.add_argument("--tag", default="", help="write <net>_weights<TAG>.npz")
    ap.add_argument("--distill", type=float, default=0.0, help="weight of the stock-teacher loss (see above)")
    ap.add_argument("--refit-landmarks", action="store_true",
                    help="O-Net: only re-fit the landmark layer of --init (ridge regression, see refit_landmarks)")
    ap.add_argument("--w-lm", type=float, default=W_LM, help="weight of the landmark loss (O-Net)")
    ap.add_argument("--balance-kinds", action="store_true", help="unmasked and masked positives weigh the same")
    ap.add_argument("--hard-pos", type=float, default=1.0, help="weight of masked positives the start net rejects")
    ap.add_argument("--hard-below", type=float, default=0.6, help="'rejects': start net's face score below this")
    ap.add_argument("--part-pos", type=float, default=0.0, help="masked part faces with IoU >= this: positives")
    ap.add_argument("--box-only", action="store_true",
                    help="the face score is distilled from the stock net on every crop; only the boxes learn from labels")
    args = ap.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.random.set_seed(args.seed)
    from export_mtcnn import keras_net

    d = np.load(CACHE / f"{args.net}_data{args.data}.npz")
    x, cls, off, lm, lm_w = d["x"], d["cls"].astype(np.int32), d["off"], d["lm"], d["lm_w"]
    from mtcnn_mine import KINDS
    kind = d["kind"].astype(np.int32) if "kind" in d.files else np.full(len(x), -1, np.int32)
    # group: 1 real unmasked face (pos/part), 2 masked face (real/synthetic, any wearing), 3 plain negative
    # (teacher anchors: 1 and 3), 0 the rest (masks off a face)
    group = np.zeros(len(x), np.int32)
    group[(cls != 0) & (kind == KINDS["without_mask"])] = 1
    group[(cls != 0) & np.isin(kind, [KINDS["with_mask"], KINDS["with_incorrect_mask"], KINDS["synthetic_mask"]])] = 2
    group[(cls == 0) & np.isin(kind, [KINDS["negative"], KINDS["lower_face"]])] = 3
    if args.part_pos > 0:
        t = np.column_stack([off[:, 0], off[:, 1], 1 + off[:, 2], 1 + off[:, 3]])  # target in crop units
        inter = (np.clip(np.minimum(t[:, 2], 1) - np.maximum(t[:, 0], 0), 0, None)
                 * np.clip(np.minimum(t[:, 3], 1) - np.maximum(t[:, 1], 0), 0, None))
        overlap = inter / (1 + (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1]) - inter)
        promote = (cls == -1) & (group == 2) & (overlap >= args.part_pos)
        cls[promote] = 1
        print(f"masked part faces with IoU >= {args.part_pos} made positives: {int(promote.sum())}", flush=True)
    print("positives by group (unmasked / masked / unknown):", int(((cls == 1) & (group == 1)).sum()),
          int(((cls == 1) & (group == 2)).sum()), int(((cls == 1) & (group == 0)).sum()), flush=True)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(x))
    n_val = max(1, len(x) // 20)
    val, tr = order[:n_val], order[n_val:]
    net = keras_net(args.net, args.init)
    teacher = keras_net(args.net) if args.distill > 0 or args.box_only else None
    opt = tf.keras.optimizers.Adam(args.lr)
    pos_w = np.ones(len(x), np.float32)
    if args.hard_pos != 1.0:
        start = np.concatenate([heads(net, normalize(x[a:a + 2048]))[-1]
                                .numpy()[:, 1] for a in range(0, len(x), 2048)])
        hard = (cls == 1) & (group == 2) & (start < args.hard_below)
        pos_w[hard] = args.hard_pos
        print(f"hard masked positives (start score < {args.hard_below}): {int(hard.sum())} of "
              f"{int(((cls == 1) & (group == 2)).sum())}, weight {args.hard_pos}", flush=True)
    onet = args.net == "onet"

    def mean_over(v, m):
        return tf.reduce_sum(v * m) / tf.maximum(tf.reduce_sum(m), 1)

    def losses(xb, cb, ob, lb, wb, gb, training, pw=None):
        outs = heads(net, xb, training)
        reg, prob = outs[0], outs[-1]
        y = tf.cast(tf.maximum(cb, 0), tf.int32)
        ce = -tf.math.log(tf.clip_by_value(tf.gather(prob, y, batch_dims=1), 1e-7, 1.0))
        pos, neg = tf.cast(cb == 1, tf.float32), tf.cast(cb == 0, tf.float32)
        if args.ohem:
            k = tf.maximum(tf.cast(tf.reduce_sum(pos + neg) * 0.7, tf.int32), 1)
            l_cls = tf.reduce_mean(tf.math.top_k(ce * (pos + neg), k).values)
        elif args.balance_kinds:
            unm, msk = pos * tf.cast(gb == 1, tf.float32), pos * tf.cast(gb != 1, tf.float32)
            if pw is not None:
                msk = msk * pw
            l_pos = tf.where(tf.reduce_sum(unm) * tf.reduce_sum(msk) > 0,
                             0.5 * (mean_over(ce, unm) + mean_over(ce, msk)), mean_over(ce, pos))
            l_cls = 0.5 * (l_pos + mean_over(ce, neg))
        else:
            l_cls = 0.5 * (mean_over(ce, pos) + mean_over(ce, neg))
        has_box = tf.cast(cb != 0, tf.float32)
        l_box = mean_over(tf.reduce_sum((reg - ob) ** 2, 1), has_box)
        l_lm = tf.constant(0.0)
        if onet:
            l_lm = mean_over(tf.reduce_sum((outs[1] - lb) ** 2, 1), wb)
        l_kd = tf.constant(0.0)
        if teacher is not None:
            t_outs = heads(teacher, xb)
            t_reg, t_p = t_outs[0], t_outs[-1][:, 1]
            right = tf.where(cb == 1, t_p > 0.5, tf.where(cb == 0, t_p < 0.5, True))
            anchor = tf.cast(((gb == 1) | (gb == 3)) & right, tf.float32)
            p = tf.clip_by_value(prob[:, 1], 1e-7, 1 - 1e-7)
            kd = -(t_p * tf.math.log(p) + (1 - t_p) * tf.math.log(1 - p))
            kd -= -(t_p * tf.math.log(tf.clip_by_value(t_p, 1e-7, 1.0))
                    + (1 - t_p) * tf.math.log(tf.clip_by_value(1 - t_p, 1e-7, 1.0)))  # KL: 0 when equal
            face = anchor * tf.cast(gb == 1, tf.float32)
            if args.box_only:  # the stock face score on every crop: the same candidates, better placed boxes
                l_cls = tf.reduce_mean(kd)
            l_kd = mean_over(kd, anchor) + W_BOX * mean_over(tf.reduce_sum((reg - t_reg) ** 2, 1), face)
        return l_cls, l_box, l_lm, l_kd

    @tf.function(reduce_retracing=True)
    def step(xb, cb, ob, lb, wb, gb, pw):
        with tf.GradientTape() as tape:
            l_cls, l_box, l_lm, l_kd = losses(xb, cb, ob, lb, wb, gb, True, pw)
            total = l_cls + W_BOX * l_box + args.w_lm * l_lm + args.distill * l_kd
        grads = tape.gradient(total, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return l_cls, l_box, l_lm, l_kd

    def evaluate():
        xs = normalize(x[val])
        l_cls, l_box, l_lm, l_kd = (float(v) for v in losses(xs, cls[val], off[val], lm[val], lm_w[val],
                                                              group[val], False))
        prob = heads(net, xs)[-1].numpy()[:, 1]
        c, g, k = cls[val], group[val], kind[val]
        acc = float(((prob > 0.5) == (c == 1))[c >= 0].mean())
        rate = lambda m: round(float((prob[m] > 0.7).mean()), 4) if m.any() else None  # noqa: E731
        return {"cls": round(l_cls, 4), "box": round(l_box, 5), "lm": round(l_lm, 6), "kd": round(l_kd, 5),
                "acc": round(acc, 4), "pos_recall@0.7": rate(c == 1),
                "unmasked@0.7": rate((c == 1) & (g == 1)), "masked@0.7": rate((c == 1) & (g == 2)),
                "neg_pass@0.7": rate(c == 0), "loose_mask_pass@0.7": rate((c == 0) & (k == KINDS["loose_mask"]))}

    if args.refit_landmarks:
        before = evaluate()
        refit_landmarks(net, x[tr], lm[tr], lm_w[tr])
        after = evaluate()
        print(f"landmark layer re-fitted: before {before}\nafter {after}", flush=True)
        np.savez(CACHE / f"{args.net}_weights{args.tag}.npz", *net.get_weights())
        return 0
    log = [{"epoch": 0, **evaluate()}]
    print(f"{args.net}: {len(tr)} train / {len(val)} val crops; before: {log[-1]}", flush=True)
    t0 = time.time()
    out = CACHE / f"{args.net}_weights{args.tag}.npz"
    for epoch in range(1, args.epochs + 1):
        perm = rng.permutation(tr)
        for a in range(0, len(perm) - args.batch + 1, args.batch):
            idx = np.sort(perm[a:a + args.batch])
            xb, ob, lb = augment(x[idx], off[idx], lm[idx], rng)
            step(xb, cls[idx], ob, lb, lm_w[idx], group[idx], pos_w[idx])
            if time.time() - t0 > args.minutes * 60:
                break
        log.append({"epoch": epoch, "s": round(time.time() - t0), **evaluate()})
        print(log[-1], flush=True)
        np.savez(out, *net.get_weights())
        if time.time() - t0 > args.minutes * 60:
            break
    (CACHE / f"{args.net}_train_log{args.tag}.json").write_text(json.dumps(log, indent=1))
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
