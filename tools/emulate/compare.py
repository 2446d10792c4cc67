"""Compare this machine's output with the arm64 one; print one line saying how they compare.

  compare.py models X86.json ARM.json    every model: same outputs (float32 within 1e-4 relative, quantized
                                         outputs within one quantization step), every loader ok on both
  compare.py detect X86.jsonl ARM.jsonl  `mask-guard detect --json` lines equal, timing fields ("ms") aside
Exit 0 when they agree, 1 when not.
"""
from __future__ import annotations

import json
import sys

TIMING_KEYS = {"ms"}  # per-image time: emulation time, never compared nor reported as speed


def load_json(path):
    with open(path) as f:
        text = f.read().strip()
    if not text:
        raise SystemExit(f"empty output in {path}")
    return json.loads(text.splitlines()[-1])


def compare_models(a_path, b_path) -> int:
    a, b = load_json(a_path), load_json(b_path)
    problems, worst = [], 0.0
    for name, ma in a["models"].items():
        mb = b["models"].get(name)
        if mb is None:
            problems.append(f"{name} missing on arm64")
            continue
        if "error" in mb or "error" in ma:
            problems.append(f"{name}: {mb.get('error') or ma.get('error')}")
            continue
        for oa, ob in zip(ma["outputs"], mb["outputs"]):
            if oa["shape"] != ob["shape"]:
                problems.append(f"{name}/{oa['name']}: shape {oa['shape']} vs {ob['shape']}")
                continue
            quantized = oa["dtype"] in ("int8", "uint8")
            diff = max((abs(x - y) for x, y in zip(oa["values"], ob["values"])), default=0.0)
            peak = max((abs(x) for x in oa["values"]), default=0.0)
            limit = 1.0 if quantized else 1e-4 * (1.0 + peak)  # quantized: in integer steps
            if diff > limit:
                problems.append(f"{name}/{oa['name']}: max difference {diff:g} (limit {limit:g})")
            if not quantized:
                worst = max(worst, diff)
    for loader, state in a["loaders"].items():
        got = b["loaders"].get(loader, "missing")
        if got != "ok" or state != "ok":
            problems.append(f"{loader}: x86 {state}, arm64 {got}")
    extra = sorted(set(b["models"]) - set(a["models"]))
    if extra:
        problems.append(f"only on arm64: {', '.join(extra)}")
    runtimes = f"x86 {a['runtime']}, numpy {a['numpy']}; arm64 {b['runtime']}, numpy {b['numpy']}"
    if problems:
        print(f"{len(problems)} problem(s): {'; '.join(problems[:4])} ({runtimes})")
        return 1
    print(f"{len(a['models'])} models and {len(a['loaders'])} loaders agree; float outputs differ by at most "
          f"{worst:.2g} ({runtimes})")
    return 0


def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def compare_detect(a_path, b_path) -> int:
    def lines(p):
        with open(p) as f:
            return [strip(json.loads(line)) for line in f if line.strip()]
    a, b = lines(a_path), lines(b_path)
    if not a:
        print(f"no detect output on x86 ({a_path})")
        return 1
    faces = sum(len(x.get("faces", [])) for x in a)
    same = sum(1 for x, y in zip(a, b) if x == y)
    if len(a) == len(b) == same:
        verdicts = [f["verdict"] for x in a for f in x.get("faces", [])]
        counts = ", ".join(f"{v} {verdicts.count(v)}" for v in sorted(set(verdicts)))
        print(f"{len(a)} images, {faces} faces ({counts}): identical to x86, timing aside")
        return 0
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    print(f"{same} of {len(a)} images identical (arm64 gave {len(b)} lines); first difference in image {first + 1}")
    return 1


if __name__ == "__main__":
    mode, x86, arm = sys.argv[1:4]
    sys.exit({"models": compare_models, "detect": compare_detect}[mode](x86, arm))
