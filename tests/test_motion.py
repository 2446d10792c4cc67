"""The motion gate: an empty entrance costs almost nothing, and nobody is missed for it.

The scenes are a real photo of an empty shop entrance (``clips.room_photo``, ../shared/data) under fresh
sensor noise every frame, with real faces (UTKFace) walking in, standing still and leaving
(tools/clip_render.py draws them). The gate alone (motion.py) is tested first; then the pipeline's rule
on top with the real models: the detector runs on motion, while any track lives, on a new background,
and at least every ``motion.max_idle_s``; otherwise it rests while the tracker still steps.
"""
from __future__ import annotations

import numpy as np
import pytest

import appliance_helpers as h
import clips
from mask_guard.config import Config, MotionConfig, config_from_dict
from mask_guard.detections import Frame
from mask_guard.motion import MotionGate, MotionResult

FPS = 15.0


@pytest.fixture(scope="module")
def room() -> np.ndarray:
    h.need_data()
    return clips.room_photo().astype(np.float32)


def noisy(base: np.ndarray, rng, gain: float = 1.0, sigma: float = 4.0, jpeg=None) -> np.ndarray:
    img = np.clip(base * gain + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8)
    if jpeg:
        import cv2

        img = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, jpeg])[1], cv2.IMREAD_COLOR)
    return img


def run_gate(frames, fps: float = 30.0, cfg: MotionConfig = None) -> tuple[list[MotionResult], MotionGate]:
    gate = MotionGate(cfg or MotionConfig())
    return [gate.check(img, i / fps) for i, img in enumerate(frames)], gate


def people_scene(people, frames: int, fps: float = FPS, seed: int = 0, light=None):
    """Rendered frames of the entrance with ``people`` ([(keys, masked)], keys as clip_render.Person's)."""
    h.need_data()
    spec, pool = clips.build_spec("standing_still", seed=seed)  # its face pool; the people are ours
    base = spec.people[0].face
    spec.people = [clips.Person(i + 1, base, masked, keys) for i, (keys, masked) in enumerate(people)]
    spec.frames, spec.fps, spec.light = frames, fps, light
    return [img for img, _ in clips.render(spec, pool)]


# --- the gate -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma,jpeg", [(4.0, None), (8.0, 50)])
def test_sensor_noise_and_jpeg_artefacts_are_not_motion(room, sigma, jpeg):
    rng = np.random.default_rng(1)
    results, _ = run_gate([noisy(room, rng, sigma=sigma, jpeg=jpeg) for _ in range(150)])
    assert results[0].first and results[0].moving  # no background yet: the detector must look
    assert not any(r.moving for r in results[1:]), [round(r.changed, 4) for r in results if r.moving]
    assert max(r.changed for r in results[1:]) < MotionConfig().min_area / 4


def test_lights_switched_off_and_on_never_leave_the_gate_active(room):
    """A step (lights off), a 0.5 s ramp (lights on) and a lamp lighting one half of the entrance: at most
    a few frames of motion (the lamp's sharp edge), never seconds of an 'active' gate."""
    rng = np.random.default_rng(2)
    lamp = np.ones_like(room)
    lamp[:, : room.shape[1] // 2] = 1.6
    frames = [noisy(room, rng) for _ in range(30)]
    frames += [noisy(room, rng, gain=0.5) for _ in range(60)]  # off: a step
    frames += [noisy(room, rng, gain=0.5 + 0.5 * k / 15) for k in range(15)]  # on: a ramp over 0.5 s
    frames += [noisy(room, rng) for _ in range(60)]
    frames += [noisy(room * lamp, rng) for _ in range(90)]  # a lamp: a change the brightness match cannot undo
    results, gate = run_gate(frames)
    moving = [i for i, r in enumerate(results) if r.moving and i > 0]
    assert not [i for i in moving if i < 165], f"uniform light changes counted as motion at {moving}"
    assert len([i for i in moving if i >= 165]) <= 6, f"active for {moving} after the lamp went on"
    assert not any(r.moving for r in results[-80:])


def test_a_new_scene_is_relearnt_at_once_not_chased_for_seconds(room):
    """The camera turned, or an IR/day switch: nothing matches; the next frame is the new background."""
    rng = np.random.default_rng(6)
    other = np.ascontiguousarray(room[::-1, ::-1])  # the same entrance upside down: every edge elsewhere
    frames = [noisy(room, rng) for _ in range(30)] + [noisy(other, rng) for _ in range(60)]
    results, gate = run_gate(frames)
    assert results[30].relearn and not results[30].moving and gate.relearned == 1
    assert not any(r.moving or r.relearn for r in results[31:])


def test_slow_light_drift_is_followed_by_the_background(room):
    rng = np.random.default_rng(3)
    frames = [noisy(room, rng, gain=0.6 + 0.4 * k / 300) for k in range(300)]  # dusk to day over 60 s at 5 fps
    results, gate = run_gate(frames, fps=5.0)
    assert not any(r.moving or r.relearn for r in results[1:])


def test_a_person_walking_in_is_motion_and_one_standing_still_fades_into_the_background(room):
    keys = [(10, 250, 200, 30), (40, 320, 215, 110), (100, 320, 215, 110), (110, 760, 230, 130)]
    frames = people_scene([(keys, False)], frames=150)
    results, _ = run_gate(frames, fps=FPS)
    assert not any(r.moving for r in results[1:10]), "empty entrance"
    assert all(r.moving for r in results[10:40]), "walking in: motion on every frame, from the first"
    still = [r.moving for r in results[40:100]]
    assert not any(still[int(3 * MotionConfig().learn_s * FPS):]), "standing still: learnt into the background"
    assert any(r.moving for r in results[100:112]), "walking out: motion again"


def test_the_background_forgets_in_seconds_of_frame_time_not_in_frames(room):
    """The same still person fades out after the same time at 5 fps as at 15 fps."""
    out = {}
    for fps in (5.0, 15.0):
        n = int(10 * fps)
        keys = [(0, 250, 200, 30), (int(fps), 320, 215, 110), (n - 1, 320, 215, 110)]  # in for 1 s, then still
        results, _ = run_gate(people_scene([(keys, False)], frames=n, fps=fps), fps=fps)
        last = max(i for i, r in enumerate(results) if r.moving)
        out[fps] = last / fps
    assert abs(out[5.0] - out[15.0]) < 1.0, out


def test_unusable_frames_are_left_to_the_detector():
    gate = MotionGate(MotionConfig())
    for bad in (np.zeros((0, 0, 3), np.uint8), np.full((40, 40, 3), np.nan, np.float32), None):
        assert gate.check(bad, 0.0).moving


# --- the pipeline's rule (real models) ----------------------------------------------------------

def pipeline(**sections):
    h.need_mouth_model()
    from mask_guard.pipeline import Pipeline

    return Pipeline(config_from_dict(sections))


def feed(pipe, frames, fps: float = FPS, start: int = 0):
    return [pipe.process(Frame(img, start + i, 1000.0 + (start + i) / fps)) for i, img in enumerate(frames)]


def test_an_empty_entrance_runs_the_detector_on_the_first_frame_and_every_max_idle_s_only(room):
    pipe = pipeline()
    rng = np.random.default_rng(4)
    results = feed(pipe, [noisy(room, rng) for _ in range(150)])  # 10 s
    ran = [(i, r.why) for i, r in enumerate(results) if r.detected]
    every = int(pipe.cfg.motion.max_idle_s * FPS)
    assert ran == [(0, "first")] + [(i, "idle_check") for i in range(every, 150, every)]
    assert all(r.faces == [] and r.timings["faces_ms"] == 0.0 for r in results if not r.detected)
    assert pipe.tracker.frame == 150, "the tracker steps on every frame, resting or not"


def test_motion_or_any_live_track_runs_the_detector_and_it_rests_again_once_the_track_died(room):
    keys = [(15, 250, 200, 40), (60, 330, 215, 110), (70, 760, 230, 130)]  # walks in and out within 4 s
    frames = people_scene([(keys, False)], frames=240)
    pipe = pipeline()
    results = feed(pipe, frames)
    assert all(r.detected for r in results[15:70]), "a person in view: the detector runs on every frame"
    ids = {f.track_id for r in results for f in r.faces if f.track_id is not None}
    assert len(ids) == 1, ids
    after = [r.why for r in results[70:]]
    assert "track" in after or "motion" in after  # the person left: the track coasts, the background forgets
    rest = after.index("") + 70  # first frame it rests
    assert rest < 70 + 3 * pipe.cfg.motion.learn_s * FPS + pipe.cfg.tracker.hit_counter_max, rest
    assert not pipe.tracker.tracked_objects and not results[-1].tallies, "the track died while the gate rested"
    assert sum(r.detected for r in results[rest:]) <= len(results[rest:]) / (pipe.cfg.motion.max_idle_s * FPS) + 1


def test_a_person_who_never_moves_is_found_within_max_idle_s_and_then_tracked_every_frame():
    keys = [(0, 320, 215, 110), (149, 320, 215, 110)]
    frames = people_scene([(keys, False)], frames=150)
    pipe = pipeline()
    pipe.gate.check = lambda image, t: MotionResult(moving=False, changed=0.0)  # perfectly still, always
    results = feed(pipe, frames)
    found = next(i for i, r in enumerate(results) if r.faces)
    assert results[found].why == "idle_check" and found / FPS <= pipe.cfg.motion.max_idle_s
    assert all(r.detected and r.why == "track" for r in results[found + 1:])
    assert any(r.tallies for r in results), "became a tracked person"


def test_with_the_gate_off_every_frame_is_detected(room):
    pipe = pipeline(motion={"enabled": False})
    rng = np.random.default_rng(5)
    results = feed(pipe, [noisy(room, rng) for _ in range(20)])
    assert all(r.detected and r.why == "off" for r in results)


# --- frames sized for the detector --------------------------------------------------------------

def test_a_720p_frame_is_searched_at_the_source_size_with_boxes_and_mouth_crops_at_full_size():
    import cv2

    from mask_guard.pipeline import to_rgb
    from mask_guard.status import snapshot_reply

    small = people_scene([([(0, 320, 230, 90), (1, 320, 230, 90)], False)], frames=1)[0]
    big = cv2.resize(small, (1280, 720), interpolation=cv2.INTER_CUBIC)  # a 720p webcam's view of it
    pipe = pipeline()
    seen = []
    detect = pipe.analyzer.faces.detect
    pipe.analyzer.faces.detect = lambda rgb: (seen.append(rgb.shape), detect(rgb))[1]
    (res,) = feed(pipe, [big])
    assert seen == [(360, 640, 3)], "scaled down once, to fit source.width x source.height (640x480)"
    (f,) = res.faces
    full = pipe.analyzer.analyze(big)  # no fit: MTCNN on the whole 1280x720 frame
    assert seen[-1] == (720, 1280, 3) and len(full) == 1
    from mask_guard.boxes import iou

    assert float(iou(f.box, full[0].box)[0, 0]) > 0.8, (f.box, full[0].box)
    assert 140 < f.box[2] - f.box[0] < 260, "the box is in 1280x720 pixels (the face is ~180 px wide there)"
    # the mouth model scored the crop cut from the full-resolution frame at that box
    again = pipe.analyzer.mouths.score_faces(to_rgb(big), type(pipe.analyzer.detect_fitted(to_rgb(big)))(
        boxes=f.box[None], scores=np.ones(1, np.float32)))
    assert np.allclose([f.mouth, f.nose], again[0, :2], atol=1e-6)
    reply, jpeg = snapshot_reply((res.frame, res), fps=10.0)
    assert (reply["width"], reply["height"]) == (1280, 720)


def test_frames_at_or_below_the_source_size_are_searched_as_they_are(room):
    pipe = pipeline(motion={"enabled": False})
    seen = []
    detect = pipe.analyzer.faces.detect
    pipe.analyzer.faces.detect = lambda rgb: (seen.append(rgb.shape), detect(rgb))[1]
    feed(pipe, [room.astype(np.uint8), room[:240, :320].astype(np.uint8).copy()])
    assert seen == [(480, 640, 3), (240, 320, 3)]


def test_the_motion_section_is_documented_and_checked():
    cfg = Config()
    assert cfg.motion.enabled and 0 < cfg.motion.max_idle_s <= 5
    with pytest.raises(ValueError, match="motion.min_area"):
        config_from_dict({"motion": {"min_area": 0.4, "relearn_area": 0.3}})


# --- visible: status, STATUS= and the hourly journal line ---------------------------------------

def test_status_and_the_hourly_line_say_idle_the_share_detected_and_the_cpu(tmp_path, caplog):
    import logging

    from mask_guard import health
    from mask_guard.daemon import Daemon, RunOptions
    from mask_guard.sources import OrderedSource
    from mask_guard.status import status_report

    h.need_mouth_model()
    frames = clips.benchmark_room(n_noise=60)[1.0]
    cfg = config_from_dict({"alerts": {"enabled": False}, "counts": {"state_file": str(tmp_path / "c.json")},
                            "service": {"control_socket": str(tmp_path / "s.sock")}})
    daemon = Daemon(cfg, RunOptions(), source=OrderedSource(iter(frames), name="room"))
    assert daemon.run() == 0 and daemon.frames == 60
    assert daemon.detector == "idle"
    assert daemon._hour.frames == 60 and 1 <= daemon._hour.detected <= 3, "the first frame, then idle checks"
    daemon._periodic(daemon._hour.start + 10.0)  # a status update: the interval's figures
    det = status_report(daemon)["detector"]
    assert det["state"] == "idle" and det["motion_gate"] and det["frames_detected_pct"] < 10, det
    text = daemon._status_text()
    assert "; idle, detector on " in text and "% of frames, CPU " in text and text.endswith("% of a core"), text
    caplog.set_level(logging.INFO, logger="mask_guard")
    health.summary(daemon, daemon._hour.start + 3600)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("last hour:")]
    assert "60 frames" in line and "detector on " in line and "% of them, CPU " in line, line
