"""Tiny-YOLO (v3-tiny style, reduced for 96 px face crops) for mouths, noses and masks: model, decoding, loss.

Backbone: conv3x3/2 then conv3x3 + maxpool stages (v3-tiny's pattern) down to stride 16; two heads
like v3-tiny: a coarse one at stride 16 (6x6 cells) and, after a 2x upsample and a route from the
stride-8 features, a fine one at stride 8 (12x12 cells). Two anchors per head, three classes:
mouth (visible lips), nose (visible nose tip and nostrils), mask (the covering over the lower face).
Decoding is YOLOv5's (no exp, so it quantizes to int8 cleanly):
    xy = (2 sigmoid(t_xy) - 0.5 + cell) / G,  wh = (2 sigmoid(t_wh))^2 * anchor,
    score_c = sigmoid(t_obj) * sigmoid(t_c)
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras
from keras import layers

NUM_CLASSES = 3  # mouth, nose, mask
NA = 2  # anchors per head
HEAD_STRIDES = (16, 8)  # coarse head first, fine head second


def _conv(x, filters, k=3, s=1, name=None):
    x = layers.Conv2D(filters, k, strides=s, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=0.97, epsilon=1e-3)(x)
    return layers.LeakyReLU(0.1)(x)


def build_model(size: int = 96, width: float = 1.0) -> keras.Model:
    """Raw head outputs [(B, S/16, S/16, NA*(5+C)), (B, S/8, S/8, NA*(5+C))] from RGB in 0..1."""
    c = lambda n: max(8, int(round(n * width / 8)) * 8)  # noqa: E731
    inp = keras.Input((size, size, 3), name="image")
    x = _conv(inp, c(16), s=2)  # /2
    x = _conv(x, c(32))
    x = layers.MaxPool2D(2)(x)  # /4
    x = _conv(x, c(64))
    x = layers.MaxPool2D(2)(x)  # /8
    fine = _conv(x, c(128))
    x = layers.MaxPool2D(2)(fine)  # /16
    x = _conv(x, c(256))
    route = _conv(x, c(128), k=1)
    y1 = _conv(route, c(192))
    out1 = layers.Conv2D(NA * (5 + NUM_CLASSES), 1, name="head16")(y1)
    u = _conv(route, c(64), k=1)
    u = layers.UpSampling2D(2)(u)
    y2 = layers.Concatenate()([u, fine])
    y2 = _conv(y2, c(96))
    out2 = layers.Conv2D(NA * (5 + NUM_CLASSES), 1, name="head8")(y2)
    return keras.Model(inp, [out1, out2], name="mouth_nose_tiny_yolo")


def grids(size: int, anchors: np.ndarray):
    """Per head: (cell xy (G*G*NA, 2), anchor wh (G*G*NA, 2), G); anchors (2*NA, 2) coarse head first."""
    out = []
    for h, stride in enumerate(HEAD_STRIDES):
        g = size // stride
        yy, xx = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
        cell = np.repeat(np.stack([xx, yy], -1).reshape(-1, 1, 2), NA, axis=1).reshape(-1, 2)
        anc = np.tile(anchors[h * NA:(h + 1) * NA], (g * g, 1))
        out.append((cell.astype(np.float32), anc.astype(np.float32), g))
    return out


def decode_head(raw, cell, anc, g):
    """raw (B, G, G, NA*(5+C)) -> boxes (B, G*G*NA, 4) cxcywh in crop fractions, logits (B, n, 1+C)."""
    t = tf.reshape(raw, [-1, g * g * NA, 5 + NUM_CLASSES])
    s = tf.sigmoid(t[..., :4]) * 2.0
    xy = (s[..., :2] - 0.5 + cell) / float(g)
    wh = tf.square(s[..., 2:4]) * anc
    return tf.concat([xy, wh], -1), t[..., 4:]


def decode(raws, size: int, anchors: np.ndarray):
    """Model outputs for TFLite: boxes (B, N, 4), scores (B, N, C) = sigmoid(obj) * sigmoid(cls)."""
    boxes, scores = [], []
    for raw, (cell, anc, g) in zip(raws, grids(size, anchors)):
        b, logits = decode_head(raw, tf.constant(cell), tf.constant(anc), g)
        boxes.append(b)
        scores.append(tf.sigmoid(logits[..., :1]) * tf.sigmoid(logits[..., 1:]))
    return tf.concat(boxes, 1), tf.concat(scores, 1)


# --- targets and loss ----------------------------------------------------------------------------

def build_targets(labels: np.ndarray, size: int, anchors: np.ndarray, anchor_t: float = 4.0):
    """labels (B, C, 4) x1y1x2y2 fractions (NaN row = absent) -> per head (B, n, 4+1+C) targets.

    YOLOv5 assignment: every anchor within a 4x size ratio, in the object's cell and its two
    nearest neighbours; a slot taken by two objects keeps the one nearer the cell centre.
    """
    out = []
    for cell, anc, g in grids(size, anchors):
        n = g * g * NA
        tgt = np.zeros((len(labels), n, 4 + 1 + NUM_CLASSES), np.float32)
        dist = np.full((len(labels), n), np.inf, np.float32)
        for b, lab in enumerate(labels):
            for c, box in enumerate(lab):
                if not np.isfinite(box).all():
                    continue
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                w, h = max(box[2] - box[0], 1e-3), max(box[3] - box[1], 1e-3)
                if not (0 <= cx < 1 and 0 <= cy < 1):
                    continue
                gx, gy = cx * g, cy * g
                gi, gj = int(gx), int(gy)
                cells = {(gi, gj)}
                cells.add((gi - 1 if gx - gi < 0.5 else gi + 1, gj))
                cells.add((gi, gj - 1 if gy - gj < 0.5 else gj + 1))
                for a in range(NA):
                    aw, ah = anc[a]
                    if max(w / aw, aw / w, h / ah, ah / h) >= anchor_t:
                        continue
                    for ci, cj in cells:
                        if not (0 <= ci < g and 0 <= cj < g):
                            continue
                        k = (cj * g + ci) * NA + a
                        d = abs(gx - ci - 0.5) + abs(gy - cj - 0.5)
                        if d < dist[b, k]:
                            dist[b, k] = d
                            tgt[b, k, :4] = [cx, cy, w, h]
                            tgt[b, k, 4] = 1.0
                            tgt[b, k, 5:] = 0.0
                            tgt[b, k, 5 + c] = 1.0
        out.append(tgt)
    return out


def giou(a, b):
    """GIoU of cxcywh boxes (..., 4)."""
    a1, a2 = a[..., :2] - a[..., 2:] / 2, a[..., :2] + a[..., 2:] / 2
    b1, b2 = b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2
    wh = tf.maximum(tf.minimum(a2, b2) - tf.maximum(a1, b1), 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter + 1e-9
    iou = inter / union
    cwh = tf.maximum(a2, b2) - tf.minimum(a1, b1)
    carea = cwh[..., 0] * cwh[..., 1] + 1e-9
    return iou - (carea - union) / carea


OBJ_BALANCE = (1.0, 2.0)  # the fine head has 4x the cells: weigh its objectness like YOLOv5 does


def yolo_loss(raws, targets, size: int, anchors: np.ndarray, mouth_pos_weight: float = 1.0):
    """Sum over heads of box (1 - GIoU), objectness BCE over all slots and class BCE on positives.

    ``mouth_pos_weight`` > 1 weighs the objectness of mouth positives up: a missed mouth (missed alarm)
    costs more than a faint false one, which leans the model toward recall."""
    lbox = lobj = lcls = 0.0
    for h, (raw, tgt, (cell, anc, g)) in enumerate(zip(raws, targets, grids(size, anchors))):
        boxes, logits = decode_head(raw, tf.constant(cell), tf.constant(anc), g)
        pos = tgt[..., 4]
        npos = tf.maximum(tf.reduce_sum(pos), 1.0)
        lbox += tf.reduce_sum((1.0 - giou(boxes, tgt[..., :4])) * pos) / npos
        bce_obj = tf.nn.sigmoid_cross_entropy_with_logits(labels=pos, logits=logits[..., 0])
        bce_obj = bce_obj * (1.0 + (mouth_pos_weight - 1.0) * pos * tgt[..., 5])
        lobj += OBJ_BALANCE[h] * tf.reduce_mean(bce_obj)
        bce_cls = tf.nn.sigmoid_cross_entropy_with_logits(labels=tgt[..., 5:], logits=logits[..., 1:])
        lcls += tf.reduce_sum(tf.reduce_sum(bce_cls, -1) * pos) / npos
    return 0.05 * lbox * 20, lobj * 4.0, lcls * 0.5


def flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of the convolutions (the rest is noise at this size)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            k = layer.kernel.shape
            out = layer.output.shape
            total += 2 * int(np.prod(k)) * int(out[1]) * int(out[2])
    return total
