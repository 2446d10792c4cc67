"""THE train / dev / test split of every image set, for training, calibration and evaluation alike.

Rule (deterministic, no randomness, no look at labels):
1. every image gets a 64-bit difference hash (grey 9x8 thumbnail, left > right);
2. images whose hashes differ in <= ``NEAR_BITS`` bits are near-duplicates (the same photo re-encoded,
   resized or slightly cropped) and are joined into one group, across all sets given together
   (ilc2021 and ilc2021_more are one source, so they are grouped together);
3. a group's part comes from the SHA-1 of its smallest member's ``set/file`` name:
   ``< TRAIN_PCT`` -> train, ``< TRAIN_PCT + DEV_PCT`` -> dev, else test.

Train parts train models; dev parts choose thresholds; only test parts are reported. The parts are cached
in ``.cache/splits/<name>.json`` (keyed by the file list, rebuilt when it changes).

    .venv/bin/python tools/splits.py        # print the parts of every scene set and faces/masktypes
"""
from __future__ import annotations

import functools
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datapaths import ROOT, data_dir  # noqa: E402

TRAIN_PCT, DEV_PCT = 60, 20  # test is the rest (20)
NEAR_BITS = 6
SCENE_SETS = ("scenes/ilc2021", "scenes/ilc2021_more", "scenes/macwin")
CACHE = ROOT / ".cache" / "splits"


def dhash(path: Path) -> int:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return 0
    small = cv2.resize(img, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def part_of(name: str) -> str:
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) % 100
    return "train" if h < TRAIN_PCT else ("dev" if h < TRAIN_PCT + DEV_PCT else "test")


def group_parts(names: list[str], hashes: list[int]) -> dict[str, str]:
    """{name: part}: union-find over near-duplicate hashes, one part per group."""
    parent = list(range(len(names)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    h = np.array(hashes, dtype=np.uint64)
    for i in range(len(h)):
        x = np.bitwise_xor(h[i + 1:], h[i])
        # popcount of 64-bit values, vectorised over bytes
        d = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(1) if len(x) else np.zeros(0)
        for j in np.nonzero(d <= NEAR_BITS)[0]:
            a, b = find(i), find(i + 1 + int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[int, list[str]] = {}
    for i, n in enumerate(names):
        groups.setdefault(find(i), []).append(n)
    out = {}
    for members in groups.values():
        p = part_of(min(members))
        for m in members:
            out[m] = p
    return out


def _files(folder: str) -> list[str]:
    root = data_dir() / folder
    if (root / "images").is_dir():
        return [f"{folder}/images/{p.name}" for p in sorted((root / "images").glob("*.jpg"))]
    return [f"{folder}/{p.relative_to(root)}" for p in sorted(root.rglob("*.jpg"))]


@functools.lru_cache(maxsize=None)
def parts(folders: tuple[str, ...] = SCENE_SETS, name: str = "scenes") -> dict[str, str]:
    """{'<set>/images/<file>': 'train'|'dev'|'test'} for every image of ``folders`` (grouped together)."""
    names = [n for f in folders for n in _files(f)]
    key = hashlib.sha1("\n".join(names).encode()).hexdigest()
    cache = CACHE / f"{name}.json"
    if cache.exists():
        got = json.loads(cache.read_text())
        if got.get("key") == key and got.get("rule") == [TRAIN_PCT, DEV_PCT, NEAR_BITS]:
            return got["parts"]
    hashes = [dhash(data_dir() / n) for n in names]
    out = group_parts(names, hashes)
    CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "rule": [TRAIN_PCT, DEV_PCT, NEAR_BITS], "parts": out}))
    return out


def scene_part(image: str | Path) -> str:
    """The part of one scene image, given its path anywhere under the data folder."""
    p = Path(image).resolve()
    rel = str(p.relative_to(data_dir())) if p.is_relative_to(data_dir()) else None
    table = parts()
    if rel is None or rel not in table:
        raise KeyError(f"{image}: not an image of {', '.join(SCENE_SETS)} under {data_dir()}")
    return table[rel]


def masktypes_parts() -> dict[str, str]:
    return parts(("faces/masktypes",), name="masktypes")


def _hashes(names: list[str], name: str) -> dict[str, int]:
    cache = CACHE / f"hashes_{name}.json"
    got = json.loads(cache.read_text()) if cache.exists() else {}
    todo = [n for n in names if n not in got]
    for n in todo:
        got[n] = dhash(data_dir() / n)
    if todo:
        CACHE.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(got))
    return {n: got[n] for n in names}


def held_out_twins(names: list[str]) -> set[str]:
    """Those of ``names`` (training candidates from any folder) that are near-duplicates of a dev or test
    image of the scene sets or faces/masktypes: training on them would leak the evaluation (faces/masktypes
    re-uses UTKFace chips, for one)."""
    held = [n for table in (parts(), masktypes_parts()) for n, p in table.items() if p != "train"]
    h_held = np.array(list(_hashes(held, "held").values()), dtype=np.uint64)
    h_cand = _hashes(names, "candidates")
    out = set()
    for n, h in h_cand.items():
        x = np.bitwise_xor(h_held, np.uint64(h))
        d = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(1)
        if (d <= NEAR_BITS).any():
            out.add(n)
    return out


def main() -> None:
    for label, table in (("scenes", parts()), ("faces/masktypes", masktypes_parts())):
        by: dict[tuple[str, str], int] = {}
        for n, p in table.items():
            s = n.split("/images/")[0] if "/images/" in n else "/".join(n.split("/")[:3])
            by[(s, p)] = by.get((s, p), 0) + 1
        print(label)
        for s in sorted({k[0] for k in by}):
            print(f"  {s:40s} " + "  ".join(f"{p} {by.get((s, p), 0):4d}" for p in ("train", "dev", "test")))


if __name__ == "__main__":
    main()
