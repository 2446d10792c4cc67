"""tools/evaluate_merge.py: the daemon's below-face rule applied to scene-photo results, as counted in README."""
from __future__ import annotations

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))
import evaluate_merge as em  # noqa: E402


def _face(box, verdict, cls="without_mask", image="a.jpg"):
    return {"image": image, "cls": cls, "found": True, "det_box": box, "verdict": verdict}


def _extra(box, verdict, image="a.jpg"):
    return {"image": image, "box": box, "verdict": verdict}


def test_a_box_under_a_face_is_merged_unless_it_shows_a_mouth():
    run = {"faces": [_face([100, 100, 200, 220], "no_mask")],
           "extras": [_extra([125, 230, 185, 290], "mask"),  # a chest read as a mask
                      _extra([300, 230, 360, 290], "mask"),  # beside: its own face
                      _extra([125, 240, 180, 300], "no_mask", image="b.jpg")]}  # another photo
    assert [d["box"] for d in em.merged(run)] == [[125, 230, 185, 290]]
    run["extras"][0]["verdict"] = "no_mask"  # a mouth: a face of its own, never silenced
    assert em.merged(run) == []


def test_annotated_faces_the_rule_would_merge_are_reported_as_such():
    run = {"faces": [_face([100, 100, 200, 220], "mask", "with_mask"), _face([120, 240, 180, 300], "mask", "with_mask")],
           "extras": []}
    assert [(d["what"], d["verdict"]) for d in em.merged(run)] == [("with_mask", "mask")]
