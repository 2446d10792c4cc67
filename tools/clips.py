"""Walk-through clips composed from still faces, with ground truth: the video evidence's raw material.

A clip is a synthetic corridor (procedural texture, no faces) in which people walk: each person is a still
face from ../shared/data pasted with a feathered elliptical alpha over a plain torso, scaled and moved along
a path (approaching: the face grows as 1/distance), optionally turning away, putting a mask on (a
chandrikadeb7 face and the prajnasb copy with a mask pasted on: same identity, same photo), crossing another
person, behind a stream blackout, under camera noise/blur/JPEG. Everything is deterministic from
(scenario, seed). The face positions in the stills come from ``tools/clip_faces.json`` (built once with the
reference ``mtcnn`` package by ``make_clips.py index``), so composing needs neither TensorFlow nor the
detector under test, and the ground-truth boxes are the reference detector's boxes carried through the same
scale and shift as the pixels.

Ground truth per person: ``masked_start``/``masked_end``, ``mask_on_frame``, and per frame the face box, the
``state`` (``frontal``, ``turned``: squeezed towards a profile, ``away``: back of the head, ``occluded``: over
30 % hidden by a nearer person, ``offscreen``, ``blackout``) and whether the mask is on. ``first_visible`` is
the first frame with a frontal face at least
``VISIBLE_PX`` wide, fully inside the frame, not blacked out: where alert latency is measured from.

Three clips play in a real photo of an empty shop entrance instead (``room_photo``: a scene photo of
``../shared/data`` cropped to where nobody stands, checked to hold no face MTCNN finds): the motion gate's
clips (lights switched off and on, a person standing still for a minute, a person entering after a
minute of empty entrance). ``benchmark_room`` gives the same entrance with sensor noise for tools/bench.py.

Modules: this one holds the scenarios, the face picks, the ground truth, the cache and the public API;
the drawing (corridor, face pasting, people, camera effects) is in ``clip_render.py`` and re-exported here.

The images are never written into the repository: clips go to the cache (``$XDG_CACHE_HOME/mask-guard/clips``)
or a folder the caller gives (a test's tmp_path).
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import cv2
import numpy as np

from datapaths import data_dir  # noqa: F401  (re-exported: clips.data_dir)
# The drawing lives in clip_render.py; its names are re-exported here because the tools and tests use them
# as ``clips.render``, ``clips.Spec`` and so on.
from clip_render import (HEIGHT, WIDTH, Person, Spec, Sprite, SpriteSource, corridor,  # noqa: F401
                         make_sprite, paste, render)

ROOT = Path(__file__).resolve().parent.parent
INDEX_PATH = Path(__file__).resolve().parent / "clip_faces.json"
RENDER_PATH = Path(__file__).resolve().parent / "clip_render.py"
CLIP_VERSION = 3  # bump when rendering changes, so cached clips are rebuilt
VISIBLE_PX = 24  # a face this wide is findable (the daemon's default faces.min_face_px)
# A shop entrance (door, stanchions, notices; ilc2021). Its one person stands right of the crop, and MTCNN
# finds no face in the crop at the brightness levels the clips use (0.5..1.0; overexposed x1.6 it finds one
# in a window's reflection, so the clips never brighten it).
ROOM = "scenes/ilc2021/images/e85ba4ba61a273d293b0a8921bc2cbba.jpg"
ROOM_CROP = (0, 30, 500, 405)  # x0, y0, x1, y1 in the photo: 4:3, nobody in it


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "mask-guard" / "clips"


def load_index(path: Path = INDEX_PATH) -> dict:
    return json.loads(Path(path).read_text())


# --- the stills -----------------------------------------------------------------------------------

class FacePool:
    """Seeded draws without repeats from the index's pools; sprites loaded lazily from the data folder."""

    def __init__(self, rng: np.random.Generator, index: Optional[dict] = None, data: Optional[Path] = None):
        self.rng = rng
        self.index = index or load_index()
        self.data = data or data_dir()
        self.used: set[str] = set()
        self._sprites: dict[str, Sprite] = {}

    def pick(self, pool: str, source: Optional[str] = None) -> dict:
        cands = [e for e in self.index["faces"] if e["pool"] == pool and e["file"] not in self.used
                 and (source is None or e["source"] == source)]
        if not cands:
            raise LookupError(f"no unused faces left in pool {pool!r} (source {source!r}); rebuild the index")
        e = cands[int(self.rng.integers(len(cands)))]
        self.used.add(e["file"])
        return e

    def background(self, name: str, w: int, h: int) -> np.ndarray:
        if name != "room":
            raise KeyError(f"unknown clip background {name!r}")
        return room_photo(w, h, self.data)

    def sprite(self, rel: str, box) -> Sprite:
        if rel not in self._sprites:
            img = cv2.imread(str(self.data / rel))
            if img is None:
                raise FileNotFoundError(f"{self.data / rel}: missing (set MASK_GUARD_DATA)")
            self._sprites[rel] = make_sprite(img, box)
        return self._sprites[rel]


# --- scenarios ------------------------------------------------------------------------------------

def _approach(rng, pid, face, masked, f0, f1, x_from, x_to, w_from=26.0, w_to=150.0, exit_to=None, **kw) -> Person:
    """Walk towards the camera from far (small face) to near (large), then leave past the frame edge."""
    y_from, y_to = HEIGHT * rng.uniform(0.36, 0.42), HEIGHT * rng.uniform(0.42, 0.5)
    keys = [(f0, x_from, y_from, w_from), (f1, x_to, y_to, w_to)]
    if exit_to is not None:  # walking past the camera: out of the side within ~0.6 s
        keys.append((f1 + 9, exit_to, y_to + 20, w_to * 1.15))
    shirt = tuple(int(v) for v in rng.uniform(20, 200, 3))
    return Person(pid, face, masked, keys, shirt=shirt, **kw)


def sc_approach_unmasked(rng, pool) -> Spec:
    """one unmasked person approaches the camera and walks out at the side"""
    p = _approach(rng, 1, pool.pick("unmasked", "utkface"), False, 5, 65, 300, 360, exit_to=760)
    return Spec("approach_unmasked", 0, [p], frames=95)


def sc_approach_masked(rng, pool) -> Spec:
    """one masked person (MaskedFace-Net) approaches and walks out"""
    p = _approach(rng, 1, pool.pick("masked", "maskedfacenet"), True, 5, 65, 330, 280, exit_to=-140)
    return Spec("approach_masked", 0, [p], frames=95)


def sc_two_at_once(rng, pool) -> Spec:
    """two people side by side approach together: one masked, one not"""
    a = _approach(rng, 1, pool.pick("unmasked", "utkface"), False, 5, 60, 220, 150, w_to=120, exit_to=-130)
    b = _approach(rng, 2, pool.pick("masked", "maskedfacenet"), True, 8, 62, 420, 490, w_to=120, exit_to=780)
    return Spec("two_at_once", 0, [a, b], frames=90)


def sc_crossing(rng, pool) -> Spec:
    """two unmasked people cross in front of the camera in opposite directions (one passes in front)"""
    y = HEIGHT * 0.42
    a = Person(1, pool.pick("unmasked", "utkface"), False, [(3, -40, y, 84), (75, 690, y + 10, 96)],
               shirt=(40, 60, 160))
    b = Person(2, pool.pick("unmasked", "utkface"), False, [(3, 690, y - 15, 66), (75, -40, y - 5, 72)],
               shirt=(60, 140, 60))
    return Spec("crossing", 0, [a, b], frames=90)


def sc_turn_away(rng, pool) -> Spec:
    """an unmasked person approaches, turns the head away for ~1 s, turns back, walks out"""
    face = pool.pick("unmasked", "utkface")
    p = Person(1, face, False, [(4, 280, 200, 40), (45, 300, 205, 90), (65, 305, 210, 100), (100, 330, 215, 150),
                                (108, 720, 230, 170)], turn=(46, 61), shirt=(120, 80, 60))
    return Spec("turn_away", 0, [p], frames=118)


def sc_mask_on(rng, pool) -> Spec:
    """a person walks in unmasked, stops and puts a mask on (same photo with a mask pasted), then stays masked"""
    face = pool.pick("pair")
    p = Person(1, face, False, [(4, 250, 200, 50), (35, 310, 215, 105), (130, 330, 220, 115), (140, 760, 230, 130)],
               mask_on_at=50, shirt=(50, 50, 50))
    return Spec("mask_on", 0, [p], frames=150)


def sc_blackout(rng, pool) -> Spec:
    """two people (one unmasked, one masked) walk slowly; the stream goes black for 1 s while both are in view"""
    a = Person(1, pool.pick("unmasked", "utkface"), False, [(3, 150, 200, 60), (100, 260, 215, 95), (108, -120, 225, 105)],
               shirt=(150, 60, 60))
    b = Person(2, pool.pick("masked", "maskedfacenet"), True, [(3, 480, 190, 55), (100, 400, 210, 90), (108, 780, 220, 100)],
               shirt=(60, 60, 150))
    return Spec("blackout", 0, [a, b], frames=118, blackout=(45, 60))


def sc_noisy(rng, pool) -> Spec:
    """three people approach one after another under camera noise, defocus, motion blur, flicker and JPEG 50"""
    a = _approach(rng, 1, pool.pick("unmasked", "utkface"), False, 3, 50, 250, 200, w_to=130, exit_to=-140)
    b = _approach(rng, 2, pool.pick("masked", "maskedfacenet"), True, 30, 80, 400, 450, w_to=130, exit_to=780)
    c = _approach(rng, 3, pool.pick("unmasked", "utkface"), False, 60, 110, 320, 320, w_to=140, exit_to=780)
    return Spec("noisy", 0, [a, b, c], frames=130, noise=7.0, blur=1.0, motion_blur=3, flicker=0.08, jpeg=50)


def sc_one_face_steady(rng, pool) -> Spec:
    """one unmasked person in view the whole time, drifting slowly (the benchmark's end-to-end clip)"""
    p = Person(1, pool.pick("unmasked", "utkface"), False, [(0, 200, 200, 85), (150, 440, 215, 100)],
               shirt=(90, 90, 140))
    return Spec("one_face_steady", 0, [p], frames=151)


def sc_lighting_change(rng, pool) -> Spec:
    """lights off and on in an empty entrance (a step, then a 0.5 s ramp); a person walks in; dimmed again"""
    p = _approach(rng, 1, pool.pick("unmasked", "utkface"), False, 150, 215, 300, 340, exit_to=760)
    light = [(0, 1.0), (59, 1.0), (60, 0.5), (104, 0.5), (112, 1.0), (185, 1.0), (186, 0.7), (254, 0.7)]
    return Spec("lighting_change", 0, [p], frames=255, background="room", light=light)


def sc_standing_still(rng, pool) -> Spec:
    """a person walks in and stands perfectly still for 60 s, then walks out"""
    p = Person(1, pool.pick("unmasked", "utkface"), False,
               [(3, 250, 200, 50), (30, 320, 215, 110), (930, 320, 215, 110), (942, 760, 230, 130)],
               shirt=(70, 90, 60))
    return Spec("standing_still", 0, [p], frames=950, background="room")


def sc_enter_after_empty(rng, pool) -> Spec:
    """60 s of empty entrance (sensor noise only), then an unmasked person walks in"""
    p = _approach(rng, 1, pool.pick("unmasked", "utkface"), False, 900, 960, 300, 360, exit_to=760)
    return Spec("enter_after_empty", 0, [p], frames=980, background="room")


SCENARIOS: dict[str, Callable] = {
    "approach_unmasked": sc_approach_unmasked,
    "approach_masked": sc_approach_masked,
    "two_at_once": sc_two_at_once,
    "crossing": sc_crossing,
    "turn_away": sc_turn_away,
    "mask_on": sc_mask_on,
    "blackout": sc_blackout,
    "noisy": sc_noisy,
    "one_face_steady": sc_one_face_steady,
    "lighting_change": sc_lighting_change,
    "standing_still": sc_standing_still,
    "enter_after_empty": sc_enter_after_empty,
}


def build_spec(name: str, seed: int = 0, index: Optional[dict] = None, data: Optional[Path] = None) -> tuple[Spec, FacePool]:
    if name not in SCENARIOS:
        raise KeyError(f"unknown clip {name!r}; known: {', '.join(SCENARIOS)}")
    rng = np.random.default_rng(zlib.crc32(f"{name}:{seed}".encode()))
    pool = FacePool(rng, index, data)
    spec = SCENARIOS[name](rng, pool)
    spec.seed = seed
    return spec, pool


# --- ground truth ---------------------------------------------------------------------------------

def truth_of(spec: Spec, per_frame: list[list[dict]]) -> dict:
    people = []
    for p in spec.people:
        rows = [(f, r) for f, rs in enumerate(per_frame) for r in rs if r["id"] == p.pid]
        vis = [f for f, r in rows if r["state"] == "frontal" and r["inside"] and r["box"][2] - r["box"][0] >= VISIBLE_PX]
        masked_end = bool(p.mask_mix(p.last) >= 0.5)
        people.append({
            "id": p.pid, "file": p.face["file"], "masked_file": p.face.get("masked_file") if p.mask_on_at else None,
            "masked_start": bool(p.masked), "masked_end": masked_end, "mask_on_frame": p.mask_on_at,
            "first_frame": p.first, "last_frame": p.last,
            "first_visible": vis[0] if vis else None, "last_visible": vis[-1] if vis else None,
            "visible_frames": len(vis),
            # compact per-frame rows: frame, x1, y1, x2, y2, state, masked
            "track": [[f, *r["box"], r["state"], r["masked"]] for f, r in rows],
        })
    n_unmasked = sum(not q["masked_end"] for q in people)
    return {
        "name": spec.name, "seed": spec.seed, "version": CLIP_VERSION, "fps": spec.fps,
        "width": spec.width, "height": spec.height, "frames": spec.frames,
        "blackout": list(spec.blackout) if spec.blackout else None,
        "effects": {"noise": spec.noise, "blur": spec.blur, "motion_blur": spec.motion_blur,
                    "flicker": spec.flicker, "jpeg": spec.jpeg},
        "background": spec.background, "light": spec.light,
        "expect": {
            "people": len(people),
            "masked": len(people) - n_unmasked,
            "unmasked": n_unmasked,
            # every person seen without a mask is alerted once, even if the mask goes on later
            "alerts": sum(not q["masked_start"] for q in people),
        },
        "people": people,
    }


# --- files ----------------------------------------------------------------------------------------

@dataclass
class Clip:
    video: Path
    truth_path: Path
    truth: dict = field(repr=False)

    @property
    def fps(self) -> float:
        return float(self.truth["fps"])


def _key(name: str, seed: int) -> str:
    h = hashlib.sha1(f"{name}:{seed}:{CLIP_VERSION}".encode())
    try:
        h.update(INDEX_PATH.read_bytes())
        h.update(Path(__file__).read_bytes())
        h.update(RENDER_PATH.read_bytes())  # the drawing changes the pixels too
    except OSError:
        pass
    return h.hexdigest()[:10]


def make_clip(name: str, seed: int = 0, out_dir: Optional[Path] = None, data: Optional[Path] = None,
              force: bool = False) -> Clip:
    """Render (or reuse from the cache) clip ``name`` as an MJPG .avi plus its ground-truth .json."""
    out = Path(out_dir) if out_dir else cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{name}-s{seed}-{_key(name, seed)}"
    video, tpath = stem.with_suffix(".avi"), stem.with_suffix(".json")
    if video.exists() and tpath.exists() and not force:
        return Clip(video, tpath, json.loads(tpath.read_text()))
    spec, pool = build_spec(name, seed, data=data)
    tmp = video.with_name(video.stem + ".part.avi")
    wr = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), spec.fps, (spec.width, spec.height))
    if not wr.isOpened():
        raise RuntimeError(f"cannot write {tmp} with MJPG")
    wr.set(cv2.VIDEOWRITER_PROP_QUALITY, spec.jpeg)
    rows = []
    for img, r in render(spec, pool):
        wr.write(img)
        rows.append(r)
    wr.release()
    truth = truth_of(spec, rows)
    tpath.write_text(json.dumps(truth))
    os.replace(tmp, video)
    return Clip(video, tpath, truth)


def read_frames(video: Path) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                return
            yield img
    finally:
        cap.release()


def contact_sheet(clip: Clip, every: int = 10, cols: int = 5) -> Path:
    """Every n-th frame with the ground-truth boxes drawn (green masked, red unmasked), as one JPEG."""
    tiles = []
    boxes: dict[int, list] = {}
    for q in clip.truth["people"]:
        for f, x1, y1, x2, y2, state, masked in q["track"]:
            boxes.setdefault(f, []).append((q["id"], (x1, y1, x2, y2), state, masked))
    for i, img in enumerate(read_frames(clip.video)):
        if i % every:
            continue
        img = img.copy()
        for pid, (x1, y1, x2, y2), state, masked in boxes.get(i, []):
            col = (0, 200, 0) if masked else (0, 0, 230)
            cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), col, 1)
            cv2.putText(img, f"{pid} {state}", (int(x1), int(y1) - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.4, col, 1)
        cv2.putText(img, str(i), (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        tiles.append(cv2.resize(img, (320, 240)))
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    sheet = np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
    path = clip.video.with_suffix(".preview.jpg")
    cv2.imwrite(str(path), sheet)
    return path


def still_frame(n_faces: int, seed: int = 0, face_px: int = 90, data: Optional[Path] = None,
                width: int = WIDTH, height: int = HEIGHT, background: str = "corridor") -> np.ndarray:
    """A corridor frame (640x480 unless told) with n unmasked/masked faces side by side (the benchmark's
    0/1/3-face frames); ``background="room"``: in the real empty entrance instead."""
    rng = np.random.default_rng(1000 + seed)
    pool = FacePool(rng, data=data)
    xs = np.linspace(width / (n_faces + 1), width * n_faces / (n_faces + 1), n_faces) if n_faces else []
    people = [Person(i + 1, pool.pick("unmasked" if i % 2 == 0 else "masked",
                                      "utkface" if i % 2 == 0 else "maskedfacenet"),
                     i % 2 == 1, [(0, float(x), height * 0.4, float(face_px)), (1, float(x), height * 0.4, float(face_px))])
              for i, x in enumerate(xs)]
    spec = Spec(f"still{n_faces}", seed, people, frames=1, width=width, height=height, background=background)
    return next(iter(render(spec, pool)))[0]


# --- the empty entrance (clips and tools/bench.py) ------------------------------------------------

def room_photo(w: int = WIDTH, h: int = HEIGHT, data: Optional[Path] = None) -> np.ndarray:
    """The real empty entrance (``ROOM`` cropped to ``ROOM_CROP``), BGR uint8 at ``w`` x ``h``."""
    path = (data or data_dir()) / ROOM
    img = cv2.imread(str(path))
    if img is None:
        raise FileNotFoundError(f"{path}: missing (set MASK_GUARD_DATA)")
    x0, y0, x1, y1 = ROOM_CROP
    return cv2.resize(img[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_CUBIC)


def benchmark_room(gains=(1.0,), n_noise: int = 30, sigma: float = 4.0, w: int = WIDTH, h: int = HEIGHT,
                   seed: int = 0, data: Optional[Path] = None) -> dict[float, list[np.ndarray]]:
    """The empty entrance at each brightness in ``gains`` (1.0: as photographed), each as ``n_noise`` frames
    of fresh sensor noise (Gaussian, ``sigma`` grey levels): made once, so that playing them costs nothing."""
    base = room_photo(w, h, data).astype(np.float32)
    rng = np.random.default_rng(seed)
    noise = [rng.normal(0, sigma, base.shape).astype(np.float32) for _ in range(n_noise)]
    return {g: [np.clip(base * g + nz, 0, 255).astype(np.uint8) for nz in noise] for g in gains}
