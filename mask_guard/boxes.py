"""Box utilities on ``(N, 4)`` x1, y1, x2, y2 arrays: IoU, NMS, squaring, clipping.

Numpy only, so every stage (faces, mouths, tracker, tools) can use them without a runtime.
Two NMS flavours: ``nms`` is the usual greedy one; ``nms_any_higher`` reproduces the ``mtcnn``
package, which drops a box when *any* higher-scoring box overlaps it, even one that was itself
dropped. MTCNN's thresholds were tuned with the latter, so faces.py uses it for parity.
"""
from __future__ import annotations

import numpy as np

# Rows per block when building IoU matrices: bounds memory to about BLOCK * N floats, so the
# thousands of P-Net proposals of a large frame never need an N x N matrix at once.
_BLOCK = 512


def area(boxes: np.ndarray) -> np.ndarray:
    """Areas without the old ``+1`` pixel convention (the mtcnn package drops it too)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def iou(a: np.ndarray, b: np.ndarray, method: str = "union") -> np.ndarray:
    """Pairwise overlap ``(len(a), len(b))``: intersection over union, or over the smaller area ("min").

    Degenerate pairs (zero union) give 0, not NaN.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    aa, ab = area(a), area(b)
    if method == "union":
        denom = aa[:, None] + ab[None, :] - inter
    elif method == "min":
        denom = np.minimum(aa[:, None], ab[None, :])
    else:
        raise ValueError(f"iou method must be 'union' or 'min', got {method!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = inter / denom
    return np.where(denom > 0, out, 0.0)


def descending(scores: np.ndarray) -> np.ndarray:
    """Indices by score, highest first, tie order as the mtcnn package (``argsort()[::-1]``)."""
    return np.argsort(np.asarray(scores))[::-1]


def nms_any_higher(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept when ``boxes`` are already in rank order (best first), mtcnn-package style.

    Box j is dropped if any i < j has overlap > ``threshold``, whether or not i survived.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    dropped = np.zeros(n, dtype=bool)
    for start in range(0, n, _BLOCK):
        rows = boxes[start:start + _BLOCK]
        ov = iou(rows, boxes[start:], method)  # only columns j >= start can be dropped by these rows
        i = np.arange(start, start + len(rows))[:, None]
        j = np.arange(start, n)[None, :]
        dropped[start:] |= ((ov > threshold) & (j > i)).any(axis=0)
    return np.flatnonzero(~dropped)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy NMS: indices of kept boxes, best first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = descending(scores)
    keep = []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(best)
        if len(order):
            order = order[iou(boxes[best], boxes[order], method)[0] <= threshold]
    return np.asarray(keep, dtype=np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow the shorter side to the longer one around the same centre (MTCNN's ``resize_to_square``)."""
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = np.maximum(w, h)
    b[:, 0] += w * 0.5 - side * 0.5
    b[:, 1] += h * 0.5 - side * 0.5
    b[:, 2] = b[:, 0] + side
    b[:, 3] = b[:, 1] + side
    return b


def clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip to pixel centres ``[0, width-1] x [0, height-1]`` (the mtcnn package's ``fit_to_image``)."""
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, max(width - 1, 0))
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, max(height - 1, 0))
    return b
