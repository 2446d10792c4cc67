"""The value type every stage passes on: rows stay aligned, bad rows are dropped, empty is fine."""
import numpy as np
import pytest

from mask_guard.detections import Detections, FaceResult, Verdict


def test_rows_with_nan_or_inf_anywhere_are_dropped():
    d = Detections(boxes=[[0, 0, 10, 10], [np.nan, 0, 1, 1], [0, 0, 5, 5], [0, 0, 6, 6]],
                   scores=[0.9, 0.8, np.inf, 0.7], landmarks=np.zeros((4, 5, 2)))
    d.landmarks[3, 2, 1] = np.nan
    kept = d.finite()
    assert len(kept) == 1 and kept.boxes[0].tolist() == [0, 0, 10, 10]


@pytest.mark.parametrize("with_landmarks", [True, False])
def test_empty_detections_survive_every_operation(with_landmarks):
    d = Detections.empty(with_landmarks=with_landmarks)
    assert len(d.finite()) == 0 and len(d[np.zeros(0, bool)]) == 0
    assert d.widths.shape == (0,)


def test_selection_keeps_all_arrays_aligned():
    d = Detections(boxes=np.arange(12).reshape(3, 4), scores=[0.1, 0.2, 0.3],
                   landmarks=np.arange(30).reshape(3, 5, 2), class_ids=[0, 1, 0])
    sel = d[np.array([False, True, True])]
    assert sel.scores.tolist() == pytest.approx([0.2, 0.3])
    assert sel.class_ids.tolist() == [1, 0] and sel.landmarks[0, 0].tolist() == [10, 11]
    assert len(d[1]) == 1


def test_mismatched_rows_are_refused():
    with pytest.raises(ValueError, match="scores"):
        Detections(boxes=np.zeros((2, 4)), scores=[0.5])


def test_face_json_has_the_detect_interface_keys():
    f = FaceResult(box=np.array([1.234, 2, 30, 40.56]), score=0.98765, landmarks=None,
                   mouth=0.9, nose=0.8, mask=0.05, verdict=Verdict.NO_MASK)
    assert f.to_json() == {"box": [1.2, 2.0, 30.0, 40.6], "score": 0.9877, "mouth": 0.9, "nose": 0.8,
                           "mask": 0.05, "verdict": "no_mask"}
