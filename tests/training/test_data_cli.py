"""`lumos data check`, `lumos data synth` and `lumos data stats` through the installed `lumos`
script."""

import json
import subprocess
import sys
from pathlib import Path

from tests.paths import DATA_LISTS

LUMOS = Path(sys.executable).parent / "lumos"


def lumos(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LUMOS, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_check_arid_lists() -> None:
    result = lumos(
        "data", "check", DATA_LISTS / "arid_v1", "--split", "1", "--lists-only", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["layout"] == "arid_v1" and report["splits"] == [1, 2, 3]
    assert report["classes"][0] == "Drink" and report["classes"][10] == "Wave"
    subsets = report["subsets"]
    assert [subsets[name]["videos"] for name in ("train", "test", "other")] == [2288, 823, 673]
    assert subsets["train"]["per_class"]["Drink"] == 201
    assert sum(subsets["test"]["per_class"].values()) == 823
    assert report["lists_only"] and report["missing"] == [] == report["unreadable"]


def test_check_dark48_lists() -> None:
    result = lumos("data", "check", DATA_LISTS / "dark48", "--split", "1", "--lists-only", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["layout"] == "dark48" and len(report["classes"]) == 48
    train, test = report["subsets"]["train"], report["subsets"]["test"]
    assert (train["videos"], test["videos"]) == (7052, 1763)
    assert train["per_class"]["whistling"] == 94 and test["per_class"]["spinning_poi"] == 87
    assert sum(train["per_class"].values()) == 7052


def test_synth_then_check_finds_missing_and_corrupt_videos(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    result = lumos(
        "data", "synth", "--out", root, "--clips-per-class", "1", "--test-clips-per-class", "1",
        "--val-clips-per-class", "1", "--seed", "3", "--frames", "8..9", "--size", "64x48",
        "--workers", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"train": 11, "validation": 11, "test": 11}

    result = lumos("data", "check", root, "--json")
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert list(report["subsets"]) == ["train", "validation", "test"]
    assert report["subsets"]["validation"]["videos"] == 11 and report["missing"] == []

    sheet = tmp_path / "sheet.png"
    result = lumos("data", "stats", root, "--json", "--contact-sheet", sheet)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["summary"]["clips"] == 33 and stats["summary"]["below_floor"] == 0
    assert 2 <= stats["summary"]["luma"]["min"] and stats["summary"]["luma"]["max"] <= 45
    assert {"luma", "noise", "legibility", "figure_height"} <= stats["clips"][0].keys()
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (root / "clips_v1" / "Run" / "Run_1_1.mp4").unlink()
    (root / "clips_v1" / "Wave" / "Wave_2_1.mp4").write_bytes(b"\x00" * 64)
    result = lumos("data", "check", root)
    assert result.returncode == 1
    assert f"missing: {root}/clips_v1/Run/Run_1_1.mp4" in result.stdout
    assert f"unreadable: {root}/clips_v1/Wave/Wave_2_1.mp4: cannot open" in result.stdout
    assert "1 missing, 1 unreadable" in result.stdout


def test_one_shift_alone_is_written_and_read_back(tmp_path: Path) -> None:
    result = lumos(
        "data", "synth", "--out", tmp_path, "--clips-per-class", "0", "--val-clips-per-class",
        "0", "--test-clips-per-class", "1", "--frames", "8", "--size", "64x48", "--workers", "1",
        "--domain", "shifted-mount",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "synth.json").read_text())["domain"] == "shifted-mount"
    result = lumos("data", "stats", tmp_path, "--json")  # renders the clips again from synth.json
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["below_floor"] == 0
    result = lumos("data", "synth", "--out", tmp_path, "--domain", "shifted-hair")
    assert result.returncode == 2 and "invalid choice: 'shifted-hair'" in result.stderr


def test_every_domain_parses_without_importing_numpy() -> None:
    """The CLI offers the generator's own domain names (one list, no copy), and reading the
    arguments stays free of numpy, torch and av, so that `lumos --help` answers at once."""
    script = (
        "import sys; from service.cli import build_parser; "
        "from training.synth.domains import DOMAINS; parser = build_parser(); "
        "assert all(parser.parse_args(['data', 'synth', '--out', 'x', '--domain', name]).domain "
        "== name for name in DOMAINS); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch', 'av')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    result = lumos("data", "check", tmp_path)
    assert result.returncode == 2
    assert "matches no known data set layout" in result.stderr
    assert "Traceback" not in result.stderr
    result = lumos("data", "check", DATA_LISTS / "arid_v1", "--split", "7", "--lists-only")
    assert result.returncode == 2 and "has no split 7" in result.stderr
    result = lumos("data", "stats", tmp_path)
    assert result.returncode == 2 and "matches no known data set layout" in result.stderr
    result = lumos("data", "synth", "--out", tmp_path, "--size", "63x48")
    assert result.returncode == 2 and "even sides" in result.stderr
