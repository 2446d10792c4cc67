#!/usr/bin/env python3
"""Alarm recall and false alarms on the real scene sets' held-out parts, the daemon beside the peer.

For each scene set (default: scenes/ilc2021, scenes/ilc2021_more, scenes/macwin) and the chosen part of
THE split (tools/splits.py; default ``test``, thresholds are chosen on ``dev``), it runs

* the daemon's single-frame path, ``python -m mask_guard.cli detect --json`` (MTCNN -> face crop ->
  mouth/nose/mask model -> verdict; the shipped config unless ``--config``), and
* the AIZOOTech SSD peer with our own runner (tools/peer_aizoo.py, the same JSON),

matches each one's faces to the annotated ones (IoU >= --iou, one to one, best IoU first) and reports, for
annotated face widths all / >= 24 / >= 40 px:

* face recall per class (with_mask, without_mask, with_incorrect_mask);
* alarm recall: without_mask faces found *and* called no_mask (over all without_mask faces);
* false alarms: with_mask faces called no_mask (over all with_mask faces); unmatched detections and
  no_mask calls on them per 100 images;
* how with_incorrect_mask faces were called (it mixes nose-out and mouth-out faces: reported apart).

    .venv/bin/python tools/evaluate.py [FOLDER ...] [--part test|dev|train] [--runner both|daemon|aizoo]
        [--config c.yaml] [--json out.json] [--markdown] [--sheet [.cache/mouth/worst_errors.jpg]]

The contact sheet shows faces from the evaluation photos: it is written outside the repository
(default .cache/mouth/, git-ignored) and refused anywhere else inside it. A folder needs images/*.jpg and
annotations/<same stem>.xml (PASCAL VOC, classes as above); one outside the split is taken whole.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datapaths import data_dir  # noqa: E402  (tools/ is on sys.path when run as a script)
from mask_guard.boxes import iou

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("without_mask", "with_mask", "with_incorrect_mask")
VERDICTS = ("no_mask", "mask_below_nose", "mask", "unsure")
BUCKETS = (("all", 0), (">=24px", 24), (">=40px", 40))


def read_voc(path: Path) -> list[tuple[str, np.ndarray]]:
    root = ET.parse(path).getroot()
    out = []
    for obj in root.iter("object"):
        b = obj.find("bndbox")
        box = np.array([float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")], np.float32)
        out.append((obj.find("name").text.strip(), box))
    return out


def match(gt: np.ndarray, det: np.ndarray, thr: float) -> dict[int, int]:
    """Greedy one-to-one matching by IoU: {gt index: det index}."""
    m = iou(gt, det)
    pairs = sorted(((m[i, j], i, j) for i in range(m.shape[0]) for j in range(m.shape[1]) if m[i, j] >= thr),
                   reverse=True)
    out, used = {}, set()
    for _, i, j in pairs:
        if i not in out and j not in used:
            out[i] = j
            used.add(j)
    return out


def run_cli(images: list[Path], config: str | None, runner: str = "daemon") -> dict[str, dict]:
    """One JSON record per image from the daemon's CLI (``runner='daemon'``) or the peer's runner."""
    if runner == "aizoo":
        cmd = [sys.executable, str(ROOT / "tools" / "peer_aizoo.py")]
    else:
        cmd = [sys.executable, "-m", "mask_guard.cli", "detect", "--json"]
        if config:
            cmd += ["--config", config]
    res = subprocess.run(cmd + [str(p) for p in images], cwd=ROOT, capture_output=True, text=True)
    if res.returncode not in (0,) and not res.stdout:
        raise SystemExit(f"mask-guard detect failed ({res.returncode}):\n{res.stderr[-3000:]}")
    out = {}
    for line in res.stdout.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "image" in rec:
            out[os.path.abspath(rec["image"])] = rec
    return out


def part_images(folder: Path, part: str) -> list[Path]:
    """The images of ``folder`` in ``part`` of THE split (every image for a folder outside it, or 'all')."""
    import splits

    images = sorted((folder / "images").glob("*.jpg"))
    if part == "all":
        return images
    table = splits.parts()
    try:
        rel = [str(p.resolve().relative_to(data_dir())) for p in images]
    except ValueError:
        return images
    if not any(r in table for r in rel):
        return images
    return [p for p, r in zip(images, rel) if table.get(r) == part]


def evaluate(folder: Path, results: dict[str, dict], iou_thr: float, images: list[Path] | None = None):
    """One row per annotated face and per unmatched detection (only ``images`` if given)."""
    faces, extras, ms = [], [], []
    keep = None if images is None else {p.name for p in images}
    for xml in sorted((folder / "annotations").glob("*.xml")):
        if keep is not None and xml.stem + ".jpg" not in keep:
            continue
        img = folder / "images" / (xml.stem + ".jpg")
        rec = results.get(os.path.abspath(img))
        if rec is None or "error" in rec:
            print(f"warning: {img}: {rec.get('error') if rec else 'no result'}", file=sys.stderr)
            continue
        ms.append(rec["ms"])
        gt = read_voc(xml)
        gt_boxes = np.array([b for _, b in gt], np.float32).reshape(-1, 4)
        dets = rec["faces"]
        det_boxes = np.array([d["box"] for d in dets], np.float32).reshape(-1, 4)
        m = match(gt_boxes, det_boxes, iou_thr)
        for i, (name, box) in enumerate(gt):
            d = dets[m[i]] if i in m else None
            faces.append({"image": str(img), "cls": name, "box": box.tolist(), "w": float(box[2] - box[0]),
                          "found": d is not None, "verdict": d["verdict"] if d else None,
                          "mouth": d["mouth"] if d else None, "nose": d["nose"] if d else None,
                          "mask": d.get("mask") if d else None,
                          "det_box": d["box"] if d else None})
        matched = set(m.values())
        for j, d in enumerate(dets):
            if j not in matched:
                extras.append({"image": str(img), "w": d["box"][2] - d["box"][0], **d})
    return faces, extras, ms


def apply_label_fixes(faces: list[dict], path: Path) -> tuple[list[dict], int]:
    """Copy of ``faces`` with the CSV's corrections (matched by image file name, class and box within 2 px)."""
    import csv

    with open(path, newline="") as fh:
        fixes = list(csv.DictReader(fh))
    out, used = [dict(f) for f in faces], set()
    for k, fx in enumerate(fixes):
        box = np.array([float(fx[c]) for c in ("xmin", "ymin", "xmax", "ymax")])
        for f in out:
            if (Path(f["image"]).name == fx["image"] and f["cls"] == fx["labelled"]
                    and np.abs(np.asarray(f["box"]) - box).max() <= 2.0):
                f["cls"] = fx["corrected"]
                used.add(k)
                break
    for k in sorted(set(range(len(fixes))) - used):
        print(f"warning: label fix {k + 1} ({fixes[k]['image']}) matches no annotated face", file=sys.stderr)
    return out, len(used)


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of the share k / n: a test part holds ~70-330 faces per class, so one face
    moves a figure by 0.3-1.4 points, and a target must be read against this spread."""
    if n <= 0:
        return [0.0, 1.0]
    p = k / n
    mid, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [round(float((mid - half) / (1 + z * z / n)), 4), round(float((mid + half) / (1 + z * z / n)), 4)]


def _with_ci(b: dict, key: str) -> str:
    lo, hi = b[f"{key}_ci"]
    return f"{b[key]:.1%} ({100 * lo:.0f}-{100 * hi:.0f})"


def summarize(faces: list[dict], extras: list[dict], ms: list[float]) -> dict:
    n_img = len(ms)
    out = {"images": n_img, "ms_per_image_mean": round(float(np.mean(ms)), 1) if ms else None,
           "ms_per_image_median": round(float(np.median(ms)), 1) if ms else None, "buckets": {}}
    for name, lo in BUCKETS:
        sel = [f for f in faces if f["w"] >= lo]
        b = {}
        for c in CLASSES:
            fc = [f for f in sel if f["cls"] == c]
            found = [f for f in fc if f["found"]]
            b[c] = {"n": len(fc), "face_recall": round(len(found) / max(len(fc), 1), 4),
                    "calls": {v: sum(1 for f in found if f["verdict"] == v) for v in VERDICTS}}
        nm, wm = b["without_mask"], b["with_mask"]
        b["alarm_recall"] = round(nm["calls"]["no_mask"] / max(nm["n"], 1), 4)
        b["alarm_recall_of_found"] = round(nm["calls"]["no_mask"] / max(sum(nm["calls"].values()), 1), 4)
        b["false_alarm_masked"] = round(wm["calls"]["no_mask"] / max(wm["n"], 1), 4)
        b["false_alarm_masked_of_found"] = round(wm["calls"]["no_mask"] / max(sum(wm["calls"].values()), 1), 4)
        b["alarm_recall_ci"] = wilson(nm["calls"]["no_mask"], nm["n"])
        b["false_alarm_masked_ci"] = wilson(wm["calls"]["no_mask"], wm["n"])
        ex = [e for e in extras if e["w"] >= lo]
        b["unmatched_detections"] = len(ex)
        b["no_mask_on_non_faces_per_100_images"] = round(100 * sum(e["verdict"] == "no_mask" for e in ex) / max(n_img, 1), 2)
        out["buckets"][name] = b
    return out


def markdown(s: dict) -> str:
    cols = [n for n, _ in BUCKETS]
    rows = [("faces without_mask (n)", lambda b: b["without_mask"]["n"]),
            ("faces with_mask (n)", lambda b: b["with_mask"]["n"]),
            ("faces with_incorrect_mask (n)", lambda b: b["with_incorrect_mask"]["n"]),
            ("face recall without_mask", lambda b: f"{b['without_mask']['face_recall']:.1%}"),
            ("face recall with_mask", lambda b: f"{b['with_mask']['face_recall']:.1%}"),
            ("face recall with_incorrect_mask", lambda b: f"{b['with_incorrect_mask']['face_recall']:.1%}"),
            ("**alarm recall** (no_mask / all unmasked; 95 % interval)", lambda b: f"**{_with_ci(b, 'alarm_recall')}**"),
            ("alarm recall of found unmasked faces", lambda b: f"{b['alarm_recall_of_found']:.1%}"),
            ("**false alarms on masked** (no_mask / all masked; 95 % interval)",
             lambda b: f"**{_with_ci(b, 'false_alarm_masked')}**"),
            ("false alarms of found masked faces", lambda b: f"{b['false_alarm_masked_of_found']:.1%}"),
            ("no_mask on non-faces per 100 images", lambda b: b["no_mask_on_non_faces_per_100_images"]),
            ("with_incorrect_mask calls no_mask/below_nose/mask/unsure",
             lambda b: "/".join(str(b["with_incorrect_mask"]["calls"][v]) for v in VERDICTS)),
            ("without_mask calls no_mask/below_nose/mask/unsure",
             lambda b: "/".join(str(b["without_mask"]["calls"][v]) for v in VERDICTS)),
            ("with_mask calls no_mask/below_nose/mask/unsure",
             lambda b: "/".join(str(b["with_mask"]["calls"][v]) for v in VERDICTS))]
    lines = ["| face width | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for label, f in rows:
        lines.append(f"| {label} | " + " | ".join(str(f(s["buckets"][c])) for c in cols) + " |")
    lines.append(f"\n{s['images']} images, {s['ms_per_image_mean']} ms per image (mean), "
                 f"{s['ms_per_image_median']} ms (median), CLI `detect --json`, this machine.")
    return "\n".join(lines)


def contact_sheet(faces: list[dict], path: Path, n: int = 16, size: int = 80, min_w: float = 24) -> None:
    """Worst errors among faces >= min_w: missed alarms (lowest mouth score) and false alarms (highest)."""
    import cv2

    from mask_guard.mouths import face_crop

    miss = sorted([f for f in faces if f["cls"] == "without_mask" and f["found"] and f["verdict"] != "no_mask"
                   and f["w"] >= min_w], key=lambda f: f["mouth"])[:n]
    fa = sorted([f for f in faces if f["cls"] == "with_mask" and f["found"] and f["verdict"] == "no_mask"
                 and f["w"] >= min_w], key=lambda f: -f["mouth"])[:n]
    rows = []
    for title, group, colour in (("missed alarm", miss, (0, 0, 255)), ("false alarm", fa, (0, 160, 255))):
        tiles = []
        for f in group:
            img = cv2.imread(f["image"])
            crop = face_crop(img, f["det_box"], size)  # same crop geometry as the detector's input
            tile = cv2.copyMakeBorder(crop, 0, 14, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            cv2.putText(tile, f"m{f['mouth']:.2f} n{f['nose']:.2f}", (2, size + 11), cv2.FONT_HERSHEY_SIMPLEX,
                        0.33, colour, 1, cv2.LINE_AA)
            tiles.append(tile)
        while len(tiles) < n:
            tiles.append(np.full((size + 14, size, 3), 255, np.uint8))
        head = np.full((16, size * n, 3), 255, np.uint8)
        cv2.putText(head, f"{title} ({len(group)} worst shown; faces >= {min_w:.0f} px)", (4, 12),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        rows += [head, np.hstack(tiles)]
    cv2.imwrite(str(path), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 80])


def side_by_side(sets: dict[str, dict[str, dict]]) -> str:
    """The headline figures per set and runner: {set: {runner: summary}} -> Markdown."""
    lines = ["| set | runner | images | alarm recall >=40 (95 % interval) | false alarms >=40 (95 % interval) "
             "| alarm recall >=24 | false alarms >=24 "
             "| face recall masked >=40 | unmatched dets /100 img | no_mask on non-faces /100 img |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, by in sets.items():
        for runner, s in by.items():
            b40, b24, ball = s["buckets"][">=40px"], s["buckets"][">=24px"], s["buckets"]["all"]
            lines.append(f"| {name} | {runner} | {s['images']} | {_with_ci(b40, 'alarm_recall')} "
                         f"| {_with_ci(b40, 'false_alarm_masked')} "
                         f"| {b24['alarm_recall']:.1%} | {b24['false_alarm_masked']:.1%} "
                         f"| {b40['with_mask']['face_recall']:.1%} "
                         f"| {100 * ball['unmatched_detections'] / max(s['images'], 1):.1f} "
                         f"| {ball['no_mask_on_non_faces_per_100_images']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="*", help="scene folders (default: the three scene sets)")
    ap.add_argument("--part", default="test", choices=["test", "dev", "train", "all"],
                    help="which part of THE split (tools/splits.py) to score; report test, calibrate on dev")
    ap.add_argument("--runner", default="both", choices=["both", "daemon", "aizoo"])
    ap.add_argument("--config", help="mask-guard config file (e.g. MTCNN or threshold settings)")
    ap.add_argument("--iou", type=float, default=0.3)
    ap.add_argument("--json", help="write the summaries (and every face row) here")
    ap.add_argument("--sheet", nargs="?", const=str(ROOT / ".cache" / "mouth" / "worst_errors.jpg"),
                    help="contact sheet of the daemon's worst errors (JPEG; default .cache/mouth/worst_errors.jpg); "
                    "never inside the repository outside .cache/ (faces from the evaluation photos)")
    ap.add_argument("--label-fixes", help="CSV of annotation corrections: adds a second, corrected table")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument("--reuse", help="rescore a --json file from an earlier run instead of running the detectors")
    args = ap.parse_args()

    import splits

    folders = [Path(f) for f in args.folders] or [data_dir() / s for s in splits.SCENE_SETS]
    if args.sheet:
        sheet = Path(args.sheet).resolve()
        if sheet.is_relative_to(ROOT) and not sheet.is_relative_to(ROOT / ".cache"):
            raise SystemExit(f"--sheet {args.sheet}: refusing to write faces into the repository; use .cache/")
    runners = ["daemon", "aizoo"] if args.runner == "both" else [args.runner]
    prev = json.loads(Path(args.reuse).read_text()) if args.reuse else None
    dump: dict = {"part": args.part, "iou": args.iou, "sets": {}}
    table: dict[str, dict[str, dict]] = {}
    pooled: dict[str, tuple[list, list, list]] = {}  # runner -> every set's faces, extras, times
    for folder in folders:
        images = part_images(folder, args.part)
        name = folder.name
        for runner in runners:
            if prev:
                results = prev["sets"][name][runner]["cli"]
            else:
                results = run_cli(images, args.config, runner)
            faces, extras, ms = evaluate(folder, results, args.iou, images)
            s = summarize(faces, extras, ms)
            table.setdefault(name, {})[runner] = s
            entry = {"summary": s, "faces": faces, "extras": extras, "cli": results}
            if args.label_fixes and runner == "daemon":
                fixed, n = apply_label_fixes(faces, Path(args.label_fixes))
                entry["summary_corrected"] = dict(summarize(fixed, extras, ms), label_fixes=n)
            dump["sets"].setdefault(name, {})[runner] = entry
            for acc, rows in zip(pooled.setdefault(runner, ([], [], [])), (faces, extras, ms)):
                acc.extend(rows)
            if args.markdown:
                print(f"\n### {name}, {args.part} part, {runner}\n")
                print(markdown(s))
            else:
                print(json.dumps({"set": name, "part": args.part, "runner": runner, **s}))
    if len(folders) > 1:  # the sets together: the figure with the narrowest interval
        table["pooled"] = {runner: summarize(*acc) for runner, acc in pooled.items()}
        dump["pooled"] = table["pooled"]
    if args.markdown:
        print(f"\n### Side by side ({args.part} parts, IoU {args.iou})\n")
        print(side_by_side(table))
    if args.json:
        Path(args.json).write_text(json.dumps(dump))
    if args.sheet:
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        contact_sheet(pooled.get("daemon", ([],))[0], Path(args.sheet))


if __name__ == "__main__":
    main()
