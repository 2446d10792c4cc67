"""The config file: every mistake is reported at once with its key path; check-config's exit codes."""
from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

from mask_guard import cli
from mask_guard.config import Config, ConfigError, config_from_dict, load_config, reference, to_dict

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "config.yaml"
VALID_TFLITE = ROOT / "models" / "mtcnn_onet.tflite"  # any real TFLite file passes check-config's open test


def errors_of(data) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        config_from_dict(data)
    return ei.value.errors


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# --- the config tree ----------------------------------------------------------------------------

def test_no_file_and_empty_file_give_the_defaults(tmp_path):
    assert to_dict(load_config(None)) == to_dict(Config())
    assert to_dict(load_config(write(tmp_path, ""))) == to_dict(Config())
    assert to_dict(load_config(write(tmp_path, "# only comments\nsource:\n", "c2.yaml"))) == to_dict(Config())


def test_a_valid_file_is_read_with_types_and_remembers_its_path(tmp_path):
    p = write(tmp_path, "source:\n  uri: '2'\n  fps: 15\nalerts:\n  quiet_start: '22:00'\n  quiet_end: '07:00'\n")
    cfg = load_config(p)
    assert cfg.source.uri == "2" and cfg.source.fps == 15.0 and isinstance(cfg.source.fps, float)
    assert cfg.alerts.quiet_start == "22:00" and cfg.path == str(p)


def test_unknown_keys_are_errors_naming_the_key_path_and_the_allowed_keys():
    errs = errors_of({"source": {"urii": "0"}, "bogus": 1})
    assert any(e.startswith("source.urii: unknown key") and "uri" in e for e in errs), errs
    assert any(e.startswith("bogus: unknown key") and "source" in e for e in errs), errs


def test_wrong_types_are_errors_with_the_value_and_the_expected_type():
    errs = errors_of({"source": {"width": "640", "realtime": "yes", "fps": True},
                      "faces": {"thresholds": [0.6, "x", 0.7]}, "alerts": 5})
    joined = "\n".join(errs)
    assert re.search(r"source\.width: '640' is str, expected an integer", joined), joined
    assert re.search(r"source\.realtime: 'yes' is str, expected a boolean", joined), joined
    assert re.search(r"source\.fps: True is bool, expected a number", joined), joined
    assert re.search(r"faces\.thresholds\[1\]: 'x' is str, expected a number", joined), joined
    assert re.search(r"alerts: expected a mapping", joined), joined


def test_out_of_range_values_and_nan_are_errors_with_the_allowed_range():
    errs = errors_of({"source": {"width": 10}, "mouths": {"mouth_on": 1.5}, "tracker": {"distance_threshold": float("nan")},
                      "faces": {"thresholds": [0.6, 0.7]}, "votes": {"count_below_nose_as": "maybe"},
                      "alerts": {"quiet_start": "25:00", "quiet_end": "07:00"}})
    joined = "\n".join(errs)
    assert "source.width: 10 is too small, allowed >= 32" in joined
    assert "mouths.mouth_on: 1.5 is too large, allowed <= 1.0" in joined
    assert "tracker.distance_threshold: nan is not a number" in joined
    assert "faces.thresholds: [0.6, 0.7] has 2 items, expected 3" in joined
    assert "votes.count_below_nose_as: 'maybe' is not allowed" in joined
    assert "alerts.quiet_start: '25:00' does not match" in joined


def test_every_error_is_listed_at_once_not_only_the_first():
    errs = errors_of({"source": {"width": "a", "height": -1, "oops": 0}, "service": {"log_level": "LOUD"},
                      "counts": {"keep_days": 0}})
    keys = sorted(e.split(":")[0] for e in errs)
    assert keys == ["counts.keep_days", "service.log_level", "source.height", "source.oops", "source.width"], errs


def test_inconsistent_pairs_are_errors():
    joined = "\n".join(errors_of({"mouths": {"mouth_on": 0.3, "mouth_off": 0.4},
                                  "source": {"retry_initial_s": 5, "retry_max_s": 1}}))
    assert "mouths.mouth_off" in joined and "source.retry_max_s" in joined
    assert "set both or neither" in "\n".join(errors_of({"alerts": {"quiet_start": "22:00"}}))


def test_malformed_yaml_is_an_error_naming_the_file_and_line(tmp_path):
    p = write(tmp_path, "source:\n  uri: [unclosed\n  width: 3\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    (err,) = ei.value.errors
    assert str(p) in err and "not valid YAML" in err and "line" in err


def test_a_top_level_list_or_scalar_is_an_error(tmp_path):
    for text in ("- a\n- b\n", "just a string\n"):
        with pytest.raises(ConfigError) as ei:
            load_config(write(tmp_path, text))
        assert "expected a mapping of keys" in ei.value.errors[0]


def test_unreadable_missing_or_binary_files_are_errors_naming_the_file(tmp_path):
    for path in (tmp_path / "missing.yaml", tmp_path):  # a folder cannot be read as a file, even by root
        with pytest.raises(ConfigError) as ei:
            load_config(path)
        assert str(path) in ei.value.errors[0] and "cannot read" in ei.value.errors[0]
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(ConfigError) as ei:
        load_config(binary)
    assert str(binary) in ei.value.errors[0]


def test_the_example_config_is_current_and_lists_every_option_commented_out():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import example_config
    finally:
        sys.path.pop(0)
    assert EXAMPLE.read_text() == example_config.render(), "run: python tools/example_config.py"
    text = EXAMPLE.read_text()
    for key, default, _doc in reference():
        section, name = key.split(".")
        assert re.search(rf"^{section}:$", text, re.M), section
        assert re.search(rf"^  # {name}: ", text, re.M), key
    # as shipped it is the defaults; with every option uncommented it is still exactly the defaults
    assert to_dict(load_config(EXAMPLE)) == to_dict(Config())
    names = {k.split(".")[1] for k, _, _ in reference()}
    uncommented = "\n".join(re.sub(r"^  # (\w+): ", r"  \1: ", line) if re.match(r"^  # (\w+): ", line)
                            and re.match(r"^  # (\w+): ", line).group(1) in names else line
                            for line in text.splitlines())
    assert to_dict(config_from_dict(__import__("yaml").safe_load(uncommented))) == to_dict(Config())


def test_every_option_has_help_text():
    for key, _default, doc in reference():
        assert doc.strip(), key
    assert {f.name for f in dataclasses.fields(Config)} >= {"source", "service"}


# --- mask-guard check-config ----------------------------------------------------------------------

def test_check_config_exits_0_with_a_summary_for_a_valid_file(tmp_path, capsys):
    p = write(tmp_path, f"mouths:\n  model: {VALID_TFLITE}\nsource:\n  uri: '0'\n")
    assert cli.main(["check-config", str(p)]) == 0
    out = capsys.readouterr().out
    assert "configuration OK" in out and "source      0" in out and str(VALID_TFLITE) in out


def test_check_config_exits_78_listing_every_error(tmp_path, capsys):
    p = write(tmp_path, "source:\n  width: '640'\n  bogus: 1\nmouths:\n  mouth_on: 7\n")
    assert cli.main(["check-config", str(p)]) == cli.EXIT_CONFIG == 78
    err = capsys.readouterr().err
    assert "INVALID, 3 errors" in err
    for key in ("source.width", "source.bogus", "mouths.mouth_on"):
        assert f"  {key}: " in err, err


def test_check_config_exits_78_for_malformed_yaml_and_missing_files(tmp_path, capsys):
    assert cli.main(["check-config", str(write(tmp_path, "a: [\n"))]) == 78
    assert "not valid YAML" in capsys.readouterr().err
    assert cli.main(["check-config", str(tmp_path / "nope.yaml")]) == 78
    assert "cannot read" in capsys.readouterr().err


def test_check_config_exits_66_when_a_model_file_is_missing_or_corrupt(tmp_path, capsys):
    missing = tmp_path / "gone.tflite"
    p = write(tmp_path, f"mouths:\n  model: {missing}\n")
    assert cli.main(["check-config", str(p)]) == cli.EXIT_MODEL == 66
    assert f"mouths.model: model file not found: {missing}" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"this is not a flatbuffer" * 10)
    p = write(tmp_path, f"mouths:\n  model: {corrupt}\n", "c2.yaml")
    assert cli.main(["check-config", str(p)]) == 66
    err = capsys.readouterr().err
    assert str(corrupt) in err and "not a valid TFLite model" in err
