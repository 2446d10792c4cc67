"""Mine MTCNN training crops the classic way, from train-part scenes and face sets (with synthetic masks).

Per net (P-Net 12 px, R-Net 24 px, O-Net 48 px crops, cut exactly like the runtime: faces.crop_and_resize):

* candidates of the cascade before that net (P-Net's boxes for R-Net; R-Net's, at a lowered R-Net
  threshold, for O-Net; P-Net's own hard negatives for P-Net) on every train-part scene image, labelled
  by IoU with the annotated faces (any class): > 0.65 positive, 0.4-0.65 part face, < 0.3 negative;
* jittered boxes around every annotated face (>= 12 px), labelled the same way;
* partial-face negatives: small boxes on the lower half of a face (a mask alone is not a face), IoU < 0.3;
* random background patches (IoU < 0.3 with every face) from the same scenes;
* UTKFace faces (found by the stock cascade, score > 0.95) with a synthetic mask (mtcnn_synth.py), some
  worn below the nose, and some left unmasked; their partial-face negatives too;
* masks off a face (``--loose`` per image): a mask template pasted on the scene's background or beside a
  face (as if held in a hand), no face behind it; boxes around the mask alone and face-like boxes with the
  mask in their lower half, all negative (the first fine-tune took a hand-held KF94 for a face).

Off by default, tried for the card and not shipped: ``--synth rich`` draws mask_synth.py's masks (black and
coloured respirators, valves, skin tones) instead of the bare templates, and ``--scene-synth P`` also draws
them on a share P of the unmasked train-scene faces, with P-Net re-run on the drawn image.

Every crop also gets a ``kind`` (KINDS below: what it shows), so training can balance masked and unmasked
positives and distil the stock net only where it must not change (real unmasked faces, plain negatives).

Box targets: annotated boxes are drawn in another style than MTCNN's (more forehead, ...); to keep the
boxes (and so the mouth crop) as the stock nets draw them, targets are the annotated box mapped by the
median stock-box/annotation offset measured on matched unmasked train faces. Landmark targets (O-Net) are
distilled: the stock O-Net's landmarks on the same crop, and for a synthetic mask on the *unmasked* crop.

    .venv/bin/python tools/training/mtcnn_mine.py --net rnet   # -> .cache/mtcnn/rnet_data.npz
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

import mtcnn_synth  # noqa: E402
from mtcnn_common import CACHE, MODELS, data_dir, detector, rgb, scene_images  # noqa: E402
from mask_guard import boxes as bx  # noqa: E402
from mask_guard.faces import crop_and_resize  # noqa: E402
from mask_guard.boxes import iou  # noqa: E402

SIZE = {"pnet": 12, "rnet": 24, "onet": 48}
POS, PART, NEG = 0.65, 0.4, 0.3
# kind of a crop: positives / part faces take their face's class; synthetic masks apart; negative sources
KINDS = {"with_mask": 0, "without_mask": 1, "with_incorrect_mask": 2, "synthetic_mask": 3, "negative": 4,
         "loose_mask": 5, "lower_face": 6}


def norm(img: np.ndarray) -> np.ndarray:
    return (img.astype(np.float32) - 127.5) * (1.0 / 128.0)


def to_u8(patches: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(patches * 128.0 + 127.5), 0, 255).astype(np.uint8)


class Sink:
    """Collects crops with labels: cls 1 pos, 0 neg, -1 part; offsets; landmark target + weight."""

    def __init__(self, size: int):
        self.size = size
        self.x, self.cls, self.off, self.src, self.lm_src, self.kind = [], [], [], [], [], []

    def add(self, nimg: np.ndarray, boxes: np.ndarray, cls: np.ndarray, targets: np.ndarray, src: int,
            teacher_img: np.ndarray | None = None, kind=KINDS["negative"]) -> None:
        if not len(boxes):
            return
        self.kind.append(np.broadcast_to(np.asarray(kind, np.int8), (len(boxes),)).copy())
        boxes = boxes.astype(np.float64)
        self.x.append(to_u8(crop_and_resize(nimg, boxes, self.size)))
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        off = (targets - boxes) / np.hstack([w, h, w, h])
        self.cls.append(cls.astype(np.int8))
        self.off.append(np.where(cls[:, None] != 0, off, 0).astype(np.float32))
        self.src.append(np.full(len(boxes), src, np.int8))
        # the crop a landmark teacher sees: the same box on the unmasked image where there is one
        self.lm_src.append(to_u8(crop_and_resize(teacher_img, boxes, 48)) if teacher_img is not None
                           else None)

    def label(self, nimg, boxes, faces, targets, src, teacher_img=None, keep_neg=True, face_kinds=None):
        """Label ``boxes`` by IoU with ``faces`` (x1y1x2y2), regress towards ``targets`` (same rows);
        ``face_kinds`` (KINDS per face) gives positives and part faces their kind."""
        if not len(boxes):
            return
        if len(faces):
            m = iou(boxes, faces)
            best = m.argmax(1)
            top = m.max(1)
            tgt = targets[best]
            fk = np.asarray(face_kinds if face_kinds is not None else [KINDS["without_mask"]] * len(faces))[best]
        else:
            top = np.zeros(len(boxes))
            tgt = boxes.copy()
            fk = np.zeros(len(boxes), int)
        cls = np.full(len(boxes), -2)
        cls[top > POS] = 1
        cls[(top >= PART) & (top <= POS)] = -1
        if keep_neg:
            cls[top < NEG] = 0
        ok = cls > -2
        kind = np.where(cls != 0, fk, KINDS["negative"])
        self.add(nimg, boxes[ok], cls[ok], tgt[ok], src, teacher_img, kind[ok])


def jitter(face: np.ndarray, rng, n: int, spread: float, lo: float, hi: float) -> np.ndarray:
    w, h = face[2] - face[0], face[3] - face[1]
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    s = max(w, h) * rng.uniform(lo, hi, n)
    x = cx + rng.uniform(-spread, spread, n) * w - s / 2
    y = cy + rng.uniform(-spread, spread, n) * h - s / 2
    return np.stack([x, y, x + s, y + s], 1)


def lower_half_boxes(face: np.ndarray, rng, n: int) -> np.ndarray:
    w, h = face[2] - face[0], face[3] - face[1]
    s = w * rng.uniform(0.3, 0.55, n)
    x = face[0] + rng.uniform(0, 1, n) * (w - s)
    y = face[1] + h / 2 + rng.uniform(0, 1, n) * np.maximum(h / 2 - s, 0)
    return np.stack([x, y, x + s, y + s], 1)


def background(shape, rng, n: int, min_px: int) -> np.ndarray:
    h, w = shape[:2]
    top = max(min_px + 1, min(h, w) // 2)
    s = rng.uniform(min_px, top, n)
    x = rng.uniform(0, np.maximum(w - s, 1))
    y = rng.uniform(0, np.maximum(h - s, 1))
    return np.stack([x, y, x + s, y + s], 1)


def box_style(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Median (stock box - annotation) / annotation size, per coordinate: the stock nets' box style."""
    if len(pairs) < 20:
        return np.zeros(4)
    d = []
    for g, b in pairs:
        w, h = g[2] - g[0], g[3] - g[1]
        d.append((b - g) / [w, h, w, h])
    return np.median(np.array(d), axis=0)


def styled(faces: np.ndarray, style: np.ndarray) -> np.ndarray:
    w = (faces[:, 2] - faces[:, 0])[:, None]
    h = (faces[:, 3] - faces[:, 1])[:, None]
    return faces + style[None] * np.hstack([w, h, w, h])


def mine(net: str, args) -> dict:
    rng = np.random.default_rng(args.seed)
    size = SIZE[net]
    sink = Sink(size)
    # the cascade before this net: stock weights; O-Net sees R-Net's boxes at a lowered R-Net threshold
    det = detector("stock", args.model_dir, thresholds=[0.6, 0.3 if net == "onet" else 0.7, 0.7])
    images = scene_images("train")
    if args.limit:
        images = images[:args.limit]
    traces, pairs = [], []
    t0 = time.time()
    for s, path, gt in images:
        img = rgb(path)
        tr = det.stages(img)
        g = np.array([b for _, b in gt], np.float64).reshape(-1, 4)
        traces.append(tr)
        if len(g) and len(tr["onet"]):
            m = iou(g, tr["onet"][:, :4])
            for i, (cls, _) in enumerate(gt):
                j = int(m[i].argmax())
                if cls == "without_mask" and m[i, j] >= 0.5 and g[i, 2] - g[i, 0] >= 24:
                    pairs.append((g[i], tr["onet"][j, :4]))
    style = box_style(pairs)
    print(f"cascade on {len(images)} train images: {time.time() - t0:.0f} s; box style {np.round(style, 3)} "
          f"from {len(pairs)} faces", flush=True)
    templates, tex = mtcnn_synth.load_templates(), mtcnn_synth.textures()
    for (s, path, gt), tr in zip(images, traces):
        img = rgb(path)
        nimg = norm(img)
        faces = np.array([b for _, b in gt], np.float64).reshape(-1, 4)
        fk = [KINDS.get(c, KINDS["with_mask"]) for c, _ in gt]
        tg = styled(faces, style) if len(faces) else faces
        cand = tr["pnet"][:, :4] if net in ("pnet", "rnet") else bx.square(tr["rnet"][:, :4].copy())
        if len(cand):  # cascade candidates: all pos/part, hard negatives capped (best-scored first)
            if len(faces):
                top = iou(cand, faces).max(1)
            else:
                top = np.zeros(len(cand))
            negs = np.nonzero(top < NEG)[0][:args.neg_per_image]
            keep = np.concatenate([np.nonzero(top >= PART)[0], negs])
            sink.label(nimg, cand[keep], faces, tg, src=0, face_kinds=fk)
        big = faces[(faces[:, 2] - faces[:, 0]) >= 12] if len(faces) else faces
        for f in big:
            sink.label(nimg, jitter(f, rng, 4, 0.1, 0.85, 1.15), faces, tg, src=1, face_kinds=fk)
            sink.label(nimg, jitter(f, rng, 3, 0.35, 0.7, 1.4), faces, tg, src=1, face_kinds=fk)
            if f[2] - f[0] >= 24:
                lb = lower_half_boxes(f, rng, 1)
                if not len(faces) or iou(lb, faces).max() < NEG:
                    sink.add(nimg, lb, np.zeros(1), lb, src=2, kind=KINDS["lower_face"])
        bg = background(img.shape, rng, 6, 12)
        if len(faces):
            bg = bg[iou(bg, faces).max(1) < NEG]
        sink.add(nimg, bg, np.zeros(len(bg)), bg, src=3)
        loose_masks(sink, img, faces, rng, args.loose, templates, tex)
        if args.scene_synth and any(c == "without_mask" for c, _ in gt):
            scene_synth(sink, det, img, nimg, gt, tg, fk, rng, args, net)
    print(f"scene crops: {sum(len(c) for c in sink.cls)} ({time.time() - t0:.0f} s)", flush=True)
    utk_faces(sink, det, rng, args)
    return finish(sink, net, style, time.time() - t0, args.out_suffix)


def loose_masks(sink: Sink, img: np.ndarray, faces: np.ndarray, rng, n: int, templates, tex) -> None:
    """``n`` masks pasted beside a face (held in a hand) or on the background, no face behind: negatives."""
    h, w = img.shape[:2]
    for _ in range(n):
        big = faces[(faces[:, 2] - faces[:, 0]) >= 20] if len(faces) else faces
        if len(big) and rng.random() < 0.7:  # beside a face, about where a hand holds it up
            f = big[int(rng.integers(len(big)))]
            fw = f[2] - f[0]
            mw = fw * rng.uniform(0.7, 1.1)
            cx = (f[0] + f[2]) / 2 + rng.choice([-1, 1]) * fw * rng.uniform(0.9, 1.6)
            cy = (f[1] + f[3]) / 2 + fw * rng.uniform(-0.3, 0.6)
        else:
            mw = rng.uniform(16, max(17, min(h, w) / 4))
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        shown, mb = mtcnn_synth.loose_mask(img, np.array([cx, cy]), mw, templates, tex, rng)
        mbw, mbh = mb[2] - mb[0], mb[3] - mb[1]
        if min(mbw, mbh) < 8 or (len(faces) and iou(mb[None], faces).max() > 0.05):
            continue  # off the image, or it would cover a face
        mc = np.array([(mb[0] + mb[2]) / 2, (mb[1] + mb[3]) / 2])
        tight = jitter(np.array([*(mc - max(mbw, mbh) / 2), *(mc + max(mbw, mbh) / 2)]), rng, 2, 0.1, 0.9, 1.4)
        s = mbw * rng.uniform(1.1, 1.6, 2)  # face-like: the mask in the lower part, "forehead" above it
        x1 = mc[0] - s / 2 + rng.uniform(-0.1, 0.1, 2) * s
        y1 = mb[1] - s * rng.uniform(0.3, 0.55, 2)
        boxes = np.vstack([tight, np.stack([x1, y1, x1 + s, y1 + s], 1)])
        if len(faces):
            boxes = boxes[iou(boxes, faces).max(1) < NEG]
        sink.add(norm(shown), boxes, np.zeros(len(boxes)), boxes, src=6, kind=KINDS["loose_mask"])


def rich_synth():
    """The mouth model's synthesiser (tools/training/mask_synth.py): colours (black too), valves, skin tones."""
    from mask_synth import MaskSynth
    return MaskSynth(data_dir() / "mask_templates")


def rich_mask(synth, rng, img: np.ndarray, lm: np.ndarray):
    """``img`` with a mask_synth mask (no gas respirators, as in mtcnn_synth), or None where none fits."""
    from mask_synth import FAMILIES
    fams = [f for f in FAMILIES if f != "gas"]
    p = np.array([FAMILIES[f][1] for f in fams])
    out = synth.apply(rng, img, lm, family=fams[rng.choice(len(fams), p=p / p.sum())])
    return None if out is None else out[0]


def scene_synth(sink: Sink, det, img, nimg, gt, tg, fk, rng, args, net: str) -> None:
    """Masks drawn on unmasked train-scene faces (>= 20 px, placed by the stock cascade's landmarks): masked
    faces at scene scale, blur and light. The cascade runs again on the new image, so R-/O-Net also learn
    from the (often off-centre) candidates P-Net gives a masked face, as at run time."""
    faces = np.array([b for _, b in gt], np.float64).reshape(-1, 4)
    d = det.detect(img)
    if not len(d):
        return
    m = iou(faces, d.boxes)
    shown, kinds, drawn = img, list(fk), []
    for i, (cls, f) in enumerate(gt):
        j = int(m[i].argmax())
        if cls != "without_mask" or m[i, j] < 0.5 or f[2] - f[0] < 20 or rng.random() >= args.scene_synth:
            continue
        out = rich_mask(args.scene_synth_obj, rng, shown, d.landmarks[j])
        if out is None:
            continue
        shown, kinds[i] = out, KINDS["synthetic_mask"]
        drawn.append(i)
    if not drawn:
        return
    nshown = norm(shown)
    tr = det.stages(shown)
    cand = tr["pnet"][:, :4] if net in ("pnet", "rnet") else bx.square(tr["rnet"][:, :4].copy())
    if len(cand):  # the candidates on the drawn faces only (the rest of the image is mined above)
        near = iou(cand, faces[drawn]).max(1) >= PART
        sink.label(nshown, cand[near], faces, tg, src=7, teacher_img=nimg, keep_neg=False, face_kinds=kinds)
    for i in drawn:
        sink.label(nshown, jitter(faces[i], rng, 3, 0.1, 0.85, 1.15), faces, tg, src=7, teacher_img=nimg,
                   face_kinds=kinds)
        sink.label(nshown, jitter(faces[i], rng, 2, 0.35, 0.7, 1.4), faces, tg, src=7, teacher_img=nimg,
                   face_kinds=kinds)


def utk_faces(sink: Sink, det, rng, args) -> None:
    files = sorted((data_dir() / "faces" / "utkface" / "without_mask").glob("*.jpg"))
    if not files or not args.utk:
        return
    files = [files[i] for i in np.linspace(0, len(files) - 1, min(args.utk, len(files))).astype(int)]
    templates, tex = mtcnn_synth.load_templates(), mtcnn_synth.textures()
    used = 0
    for p in files:
        img = rgb(p)
        d = det.detect(img)
        if len(d) != 1 or d.scores[0] < 0.95:
            continue
        box, lm = d.boxes[0].astype(np.float64), d.landmarks[0]
        masked = rng.random() < args.utk_masked
        if masked and args.synth_obj is not None:
            out = rich_mask(args.synth_obj, rng, img, lm)
            shown = out if out is not None else img
            masked = out is not None
        elif masked:
            shown = mtcnn_synth.put_mask(img, lm, templates, tex, rng, below_nose=rng.random() < 0.25)
        else:
            shown = img
        nshown, nteach = norm(shown), norm(img)
        f = box[None]
        fk = [KINDS["synthetic_mask" if masked else "without_mask"]]
        sink.label(nshown, jitter(box, rng, 3, 0.1, 0.85, 1.15), f, f, src=4, teacher_img=nteach, face_kinds=fk)
        sink.label(nshown, jitter(box, rng, 2, 0.35, 0.7, 1.4), f, f, src=4, teacher_img=nteach, face_kinds=fk)
        lb = lower_half_boxes(box, rng, 1)
        if iou(lb, f).max() < NEG:
            sink.add(nshown, lb, np.zeros(1), lb, src=5, kind=KINDS["lower_face"])
        used += 1
    print(f"utkface: {used} faces used of {len(files)}", flush=True)


def finish(sink: Sink, net: str, style: np.ndarray, secs: float, suffix: str = "") -> dict:
    x = np.concatenate(sink.x)
    cls = np.concatenate(sink.cls)
    off = np.concatenate(sink.off)
    src = np.concatenate(sink.src)
    kind = np.concatenate(sink.kind)
    lm = np.zeros((len(x), 10), np.float32)
    lm_w = np.zeros(len(x), np.float32)
    if net == "onet":  # distilled landmarks: the stock O-Net on the (unmasked, where known) crop
        from mask_guard.faces import Net
        teacher = Net(MODELS / "mtcnn_onet.tflite", 1, 8)
        crops = np.concatenate([t if t is not None else x[i0:i0 + len(c)]
                                for t, c, i0 in zip(sink.lm_src, sink.cls, np.cumsum([0] + [len(c) for c in sink.cls])[:-1])])
        for a in range(0, len(x), 128):
            (out,) = teacher.run_batched(norm(crops[a:a + 128]), 10)
            lm[a:a + 128] = out
        lm_w[cls != 0] = 1.0
    out = CACHE / f"{net}_data{suffix}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, x=x, cls=cls, off=off, lm=lm, lm_w=lm_w, src=src, kind=kind)
    summary = {"net": net, "crops": len(x), "pos": int((cls == 1).sum()), "part": int((cls == -1).sum()),
               "neg": int((cls == 0).sum()), "by_source": {int(k): int((src == k).sum()) for k in np.unique(src)},
               "positives_by_kind": {n: int(((cls == 1) & (kind == k)).sum()) for n, k in KINDS.items()},
               "negatives_by_kind": {n: int(((cls == 0) & (kind == k)).sum()) for n, k in KINDS.items()},
               "box_style": style.tolist(), "seconds": round(secs)}
    (CACHE / f"{net}_data{suffix}.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", required=True, choices=list(SIZE))
    ap.add_argument("--model-dir", type=Path, default=MODELS)
    ap.add_argument("--neg-per-image", type=int, default=40)
    ap.add_argument("--utk", type=int, default=2000, help="UTKFace faces to use (0: none)")
    ap.add_argument("--utk-masked", type=float, default=0.75, help="share of UTKFace faces given a synthetic mask")
    ap.add_argument("--loose", type=int, default=2, help="masks off a face pasted per scene image (negatives)")
    ap.add_argument("--out-suffix", default="", help="write <net>_data<suffix>.npz (keep the old data)")
    ap.add_argument("--limit", type=int, default=0, help="first N train images only (a quick try)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synth", default="templates", choices=["templates", "rich"],
                    help="synthetic masks: the bare templates (mtcnn_synth) or mask_synth's colours, valves, skin tones")
    ap.add_argument("--scene-synth", type=float, default=0.0,
                    help="share of unmasked train-scene faces also drawn with a synthetic mask (0: none)")
    args = ap.parse_args(argv)
    args.synth_obj = rich_synth() if args.synth == "rich" else None
    args.scene_synth_obj = (args.synth_obj or rich_synth()) if args.scene_synth else None
    mine(args.net, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
