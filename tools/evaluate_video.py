#!/usr/bin/env python3
"""People counted and alerts on the real clips (../shared/data/videos), against hand-written ground truth.

The truth (tools/video_truth.json) was written by looking at frames: one entry per appearance of a person,
with a time window, the face's horizontal range, masked or not, and whether the appliance must count
(``must``) and alert (``alert: must``) them. The daemon itself runs on each clip frame by frame (the
harness of tools/latency.py: ``Daemon(cfg).run()`` in a child process, real models, sound to ALSA's null
device, a recording Outcomes). Cooldown 0 (latency.py's clip config), so a duplicate alert cannot hide
behind the cooldown.

Each counted person (a track that the votes decided) is matched to the appearance its faces overlap most
in time whose x range holds its face centre. Where the truth gives an appearance keyframes (``at``: the face
centre, as shares of the frame width and height, at times looked at), a track belongs to it only if its
face centre is near the interpolated keyframe position in at least half of its frames in that window, so a
passer-by crossing the frame is not taken for the person the camera follows. Reported per clip: people counted; must-count appearances
counted / missed; phantoms (counted people matching no appearance); alerts on must-alert people (exactly
one each is right), on may-alert people, and on masked people (false alarms).

    .venv/bin/python tools/evaluate_video.py [CLIP ...] [--config-set KEY=VALUE ...] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datapaths import data_dir  # noqa: E402

TRUTH = Path(__file__).resolve().parent / "video_truth.json"


NEAR_X, NEAR_Y = 0.12, 0.10  # keyframe tolerance (shares of width, height): a face width or so, plus motion


def track_spans(events: list[dict], fps: float, width: float, height: float = 1.0) -> dict[int, dict]:
    """Per track id: first/last time seen (s), face centres (t, x, y as shares of the frame), decision frame."""
    out: dict[int, dict] = {}
    for e in events:
        t = e["frame"] / fps
        for tid, x1, y1, x2, y2, *_ in e["faces"]:
            if tid is None:
                continue
            s = out.setdefault(tid, {"t0": t, "t1": t, "xs": [], "pts": [], "counted_at": None, "alerts": []})
            s["t1"] = t
            s["xs"].append((x1 + x2) / 2 / width)
            s["pts"].append((t, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height))
        for tid in e["new"]:
            out.setdefault(tid, {"t0": t, "t1": t, "xs": [], "counted_at": None, "alerts": []})["counted_at"] = t
        for tid in e["alerted"]:
            out.setdefault(tid, {"t0": t, "t1": t, "xs": [], "counted_at": None, "alerts": []})["alerts"].append(t)
    return out


def keyframe_at(a: dict, t: float) -> tuple[float, float]:
    """The appearance's face centre at time ``t``, linearly between its keyframes (held at the ends)."""
    at = sorted(a["at"])
    if t <= at[0][0]:
        return at[0][1], at[0][2]
    for (t0, x0, y0), (t1, x1, y1) in zip(at, at[1:]):
        if t <= t1:
            k = (t - t0) / max(t1 - t0, 1e-9)
            return x0 + k * (x1 - x0), y0 + k * (y1 - y0)
    return at[-1][1], at[-1][2]


def follows(span: dict, a: dict) -> bool:
    """Is the track's face near the keyframed position in at least half of its frames in the window?"""
    pts = [p for p in span.get("pts", []) if a["from_s"] - 0.5 <= p[0] <= a["to_s"] + 0.5]
    if not pts:
        return False
    near = 0
    for t, x, y in pts:
        kx, ky = keyframe_at(a, t)
        near += abs(x - kx) <= NEAR_X and abs(y - ky) <= NEAR_Y
    return near * 2 >= len(pts)


def match(span: dict, appearances: list[dict]) -> int | None:
    """Index of the appearance this track belongs to (most time overlap, face centre in its x range,
    and near the keyframes where the appearance has them)."""
    x = sum(span["xs"]) / len(span["xs"]) if span["xs"] else 0.5
    best, best_ov = None, 0.0
    for i, a in enumerate(appearances):
        if not (a["x"][0] - 0.1 <= x <= a["x"][1] + 0.1):
            continue
        if a.get("at") and not follows(span, a):
            continue
        ov = min(span["t1"], a["to_s"] + 0.5) - max(span["t0"], a["from_s"] - 0.5)
        # a named person beats a crowd entry at equal overlap
        ov = ov + (0.0 if a.get("many") else 1e-3)
        if ov > best_ov:
            best, best_ov = i, ov
    return best


def score_clip(name: str, truth: dict, events: list[dict], fps: float, width: float, height: float = 1.0) -> dict:
    apps = truth["appearances"]
    groups = {a: g for g in truth.get("same_person", []) for a in g}
    spans = track_spans(events, fps, width, height)
    counted = {tid: s for tid, s in spans.items() if s["counted_at"] is not None}
    hits: dict[int, list[int]] = {}
    phantoms, alerts_masked, alerts_must, alerts_may, alerts_phantom = [], 0, {}, 0, 0
    for tid, s in counted.items():
        i = match(s, apps)
        if i is None:
            phantoms.append(tid)
            alerts_phantom += len(s["alerts"])
            continue
        a = apps[i]
        covered = [i] + [j for j, b in enumerate(apps) if b["id"] in groups.get(a["id"], []) and j != i
                         and s["t0"] <= b["to_s"] and s["t1"] >= b["from_s"]]
        for j in covered:
            hits.setdefault(j, []).append(tid)
        if a.get("unmasked") and a.get("alert") == "must":
            alerts_must[i] = alerts_must.get(i, 0) + len(s["alerts"])
        elif a.get("unmasked"):
            alerts_may += len(s["alerts"])
        else:
            alerts_masked += len(s["alerts"])
    must = [i for i, a in enumerate(apps) if a.get("must")]
    must_alert = [i for i, a in enumerate(apps) if a.get("alert") == "must"]
    same = {j for g in truth.get("same_person", []) for a in g for j, b in enumerate(apps) if b["id"] == a}
    per_must_alert = {apps[i]["id"]: alerts_must.get(i, 0) + sum(alerts_must.get(j, 0) for j in range(len(apps))
                                                                if j != i and j in same and i in same)
                      for i in must_alert}
    res = {
        "clip": name, "frames": len(events), "counted": len(counted),
        "truth_must": len(must), "truth_may_named": sum(1 for a in apps if not a.get("must") and not a.get("many")),
        "must_counted": sum(1 for i in must if i in hits), "must_missed": [apps[i]["id"] for i in must if i not in hits],
        "must_counted_twice": [apps[i]["id"] for i in must if len(hits.get(i, [])) > 1 and apps[i]["id"] not in groups],
        "phantoms": len(phantoms),
        "may_ids": [a["id"] for a in apps if not a.get("must")],
        "alerts": sum(len(s["alerts"]) for s in spans.values()),
        "alerts_per_must_person": per_must_alert,
        "alerts_on_may_unmasked": alerts_may, "false_alerts_on_masked": alerts_masked, "alerts_on_phantoms": alerts_phantom,
        "people": {str(tid): {"t": [round(s["t0"], 2), round(s["t1"], 2)], "counted_at": round(s["counted_at"], 2),
                              "alerts": [round(t, 2) for t in s["alerts"]],
                              "truth": (apps[match(s, apps)]["id"] if match(s, apps) is not None else None)}
                   for tid, s in counted.items()},
    }
    res["ok"] = (not res["must_missed"] and res["phantoms"] == 0 and alerts_masked == 0 and alerts_phantom == 0
                 and all(v == 1 for v in per_must_alert.values()) and not res["must_counted_twice"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*")
    ap.add_argument("--config-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value for the runs (YAML value), e.g. faces.weights=stock")
    ap.add_argument("--json")
    args = ap.parse_args()
    import yaml

    import latency

    truth = json.loads(TRUTH.read_text())["clips"]
    names = args.clips or sorted(truth)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mg-video-") as tmp:
        for name in names:
            video = data_dir() / "videos" / name
            cap = cv2.VideoCapture(str(video))
            fps, width = cap.get(cv2.CAP_PROP_FPS) or 30.0, cap.get(cv2.CAP_PROP_FRAME_WIDTH)
            height = cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
            cap.release()
            work = Path(tmp) / Path(name).stem
            cfg = latency.daemon_config(work)
            for kv in args.config_set:
                key, val = kv.split("=", 1)
                sec, k = key.split(".", 1)
                cfg.setdefault(sec, {})[k] = yaml.safe_load(val)
            run = latency.run_on_clip(None, work, cfg=cfg, video=video, timeout=1200)
            if run.returncode != 0:
                raise SystemExit(f"{name}: daemon exited {run.returncode}\n{run.log[-2000:]}")
            rows.append(score_clip(name, truth[name], run.events, fps, width, height))
    print("| clip | counted | must count (counted/truth) | phantoms | alerts | alerts per must-alert person "
          "| false alerts on masked | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {r['counted']} | {r['must_counted']}/{r['truth_must']} | {r['phantoms']} | {r['alerts']} "
              f"| {', '.join(f'{k}: {v}' for k, v in r['alerts_per_must_person'].items())} "
              f"| {r['false_alerts_on_masked']} | {'ok' if r['ok'] else 'FAIL'} |")
    for r in rows:
        may = sum(1 for p in r["people"].values() if p["truth"] in r["may_ids"])
        print(f"\n{r['clip']}: missed {r['must_missed'] or 'none'}; counted twice {r['must_counted_twice'] or 'none'}; "
              f"counted people matched to may-count entries {may}")
        for tid, p in r["people"].items():
            print(f"  person {tid}: seen {p['t'][0]}-{p['t'][1]} s, counted at {p['counted_at']} s, "
                  f"alerts {p['alerts'] or '-'}, truth: {p['truth'] or 'PHANTOM'}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
