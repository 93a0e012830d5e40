"""The benchmarks' plumbing: a real quick run end to end, the doc's generated rows, profiles."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import decode, videos
from bench.profile import summarize
from bench.report import update_doc


def test_quick_decode_run_writes_results_and_its_doc_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(videos, "SCRATCH", tmp_path / "scratch")
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nprose stays\n")

    assert decode.main(["--quick", "--results", str(tmp_path), "--doc", str(doc)]) == 0

    record = json.loads((tmp_path / "decode-tiny-quick.json").read_text())
    assert record["command"] == f"lumos bench decode --quick --results {tmp_path} --doc {doc}"
    assert record["machine"]["cores"] >= 1 and "start" in record["load_1m"]
    threads = {case["threads"] for case in record["cases"]}
    assert 1 in threads
    for case in record["cases"]:
        assert case["frames"] == 25  # 1 s at 25 fps, every frame decoded and resized
        assert case["lumos_fps"] > 0 and case["ffmpeg_fps"] > 0 and case["ratio"] > 0
        assert case["integrate_cpu_ratio"] > 0
    text = doc.read_text()
    assert "prose stays" in text
    assert "<!-- bench:decode -->" in text and "| tiny-quick |" in text


def test_a_rerun_replaces_its_row_and_keeps_the_others(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text(
        "# B\n\n## inference\n\n<!-- bench:inference -->\n<!-- /bench:inference -->\nafter\n"
    )
    update_doc(doc, "inference", {"config": "paper-16", "x": "1"})
    update_doc(doc, "inference", {"config": "demo-16", "x": "2"})
    update_doc(doc, "inference", {"config": "paper-16", "x": "3"})
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| ")]
    assert rows == ["| config | x |", "| --- | --- |", "| demo-16 | 2 |", "| paper-16 | 3 |"]
    assert doc.read_text().endswith("<!-- /bench:inference -->\nafter\n")

    update_doc(doc, "inference", {"config": "demo-16", "x": "4", "y": "5"})
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| ")]
    assert rows[2:] == ["| demo-16 | 4 | 5 |"], "rows under other columns are dropped"

    update_doc(doc, "queue", {"config": "demo", "clips/s": "9"})
    assert "## queue\n\n<!-- bench:queue -->\n| config | clips/s |" in doc.read_text()


def test_profile_summary_shares_own_and_inclusive_time() -> None:
    collapsed = "\n".join(
        [
            "process 1:thread 1;main (a.py:3);decode (d.py:10);to_ndarray (frame.pyx:5) 6",
            "process 1:thread 1;main (a.py:3);decode (d.py:11) 2",
            "process 1:thread 1;main (a.py:4);infer (i.py:2) 2",
        ]
    )
    summary = summarize(collapsed)
    assert summary["samples"] == 10
    assert summary["own"][0] == ["to_ndarray (frame.pyx)", 0.6]
    inclusive = dict(summary["inclusive"])
    assert inclusive["main (a.py)"] == 1.0
    assert inclusive["decode (d.py)"] == 0.8


def test_native_frames_without_symbols_count_for_their_library() -> None:
    collapsed = (
        "process 1:thread 1;decode (d.py:10);0x7fb2 (libavcodec-e57b519c.so.62.11.100) 3\n"
        "process 1:thread 1;decode (d.py:10);0x7fc9 (libavcodec-e57b519c.so.62.11.100) 1\n"
    )
    assert summarize(collapsed)["own"] == [["libavcodec (native)", 1.0]]


def test_lumos_bench_runs_the_named_benchmark_with_its_own_options() -> None:
    lumos = [sys.executable, "-m", "service.cli", "bench"]
    shown = subprocess.run([*lumos, "decode", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0
    assert "usage: lumos bench decode" in shown.stdout and "--quick" in shown.stdout

    unknown = subprocess.run([*lumos, "fastest"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "invalid choice: 'fastest'" in unknown.stderr


def test_waiting_threads_are_one_entry() -> None:
    collapsed = (
        "process 1:thread 1;run (a.py:3);EpollSelector.select (selectors.py:468) 3\n"
        "process 1:thread 2;_bootstrap (threading.py:9);_worker (thread.py:81) 5\n"
        "process 1:thread 3;work (w.py:2);decode_frames (decode.py:110) 2\n"
    )
    own = dict(summarize(collapsed)["own"])
    assert own == {"(waiting)": 0.8, "decode_frames (decode.py)": 0.2}
