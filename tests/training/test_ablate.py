"""`lumos train ablate` end to end at a tiny budget, on tiny benchmarks written by `lumos data
synth`: every row is trained within its share of the budget, scored on every test set, and the
report has every row, every comparison with its interval, and keeps the hand-written section."""

from pathlib import Path

import pytest

from service.cli import main
from tests.training.test_recipe_stages import CONFIGS, TINY
from training.ablate import COMPARISONS, ROWS, budget_shares
from training.engine import load_checkpoint

BUDGET = 0.2  # seconds: one to a few steps a stage for these width-2 networks
SETTINGS = [*TINY, "all.optim.amp=false"]  # in bf16 the width-2 student diverges in a few steps


def synth(root: Path, *options: str) -> Path:
    sizes = ["--frames", "12..16", "--size", "64x48", "--workers", "1"]
    assert main(["data", "synth", "--out", str(root), *sizes, *options]) == 0
    return root


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """Runs the ablation once; returns (work, doc, training data, second test set)."""
    root = tmp_path_factory.mktemp("ablate")
    data = synth(
        root / "data",
        *["--clips-per-class", "1", "--val-clips-per-class", "2", "--test-clips-per-class", "1"],
    )
    other = synth(root / "other", "--clips-per-class", "0", "--test-clips-per-class", "1")
    doc = root / "ablations.md"
    doc.write_text("# old table\n\n## What it shows\n\nWritten by hand.\n")
    args = ["--config-dir", str(CONFIGS), "--data", str(data), "--budget-s", str(BUDGET)]
    args += ["--test-data", str(data), "--test-data", str(other), "--seeds", "5"]
    args += ["--work", str(root / "work"), "--doc", str(doc), *[f"--set={s}" for s in SETTINGS]]
    assert main(["train", "ablate", *args]) == 0
    return root / "work" / "seed5", doc, data, other


def test_every_stage_trains_the_steps_of_its_share_of_the_budget(ablation) -> None:
    work, _, data, _ = ablation
    shares = budget_shares(CONFIGS, data, SETTINGS)  # TINY: one epoch a stage
    assert shares == pytest.approx({"teacher": 0.4, "ssl": 0.4, "distill": 0.2})
    expected = {
        "plain": ("distill", 1.0),
        "plain_t": ("distill", 0.4),
        "dff_supcon": ("teacher", 0.4),
        "ce": ("distill", 0.6),
        "ssl_temporal": ("ssl", 0.4),
        "kd_temporal": ("distill", 0.2),
    }
    for name, (stage, share) in expected.items():
        last = load_checkpoint(work / name / stage / "checkpoints" / "last.pt")
        assert last["config"]["optim"]["budget_s"] == pytest.approx(BUDGET * share, abs=1e-3)
        assert last["step"] == last["plan"]["steps"] >= 1 and last["plan"]["seconds_per_step"] > 0
        assert last["config"]["data"]["test"] is False  # the ablation scores the test lists


def test_each_row_starts_and_learns_from_what_it_says(ablation) -> None:
    work = ablation[0]

    def config(name: str, stage: str) -> dict:
        return load_checkpoint(work / name / stage / "checkpoints" / "last.pt")["config"]

    teacher = str(work / "dff_supcon" / "teacher" / "checkpoints" / "best.pt")
    assert config("single", "teacher")["arch"]["fusion"] == "single"
    assert config("sum", "teacher")["lambda_sup"] == 0
    assert (config("plain", "distill")["teacher"], config("plain", "distill")["init"]) == (
        None,
    ) * 2
    assert (config("ce", "distill")["teacher"], config("ce", "distill")["init"]) == (None, teacher)
    assert config("kd_none", "distill")["teacher"] == teacher
    for views in ("spatial", "temporal", "two_view"):
        ssl = config(f"ssl_{views}", "ssl")
        assert (ssl["init"], ssl["views"]) == (teacher, views)
        kd = config(f"kd_{views}", "distill")
        assert kd["init"] == str(work / f"ssl_{views}" / "ssl" / "checkpoints" / "best.pt")


def test_the_report_has_every_row_and_comparison_on_every_test_set(ablation) -> None:
    _, doc, data, other = ablation
    text = doc.read_text()
    assert text.endswith("## What it shows\n\nWritten by hand.\n") and "# old table" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for row in ROWS.values():
        line = next(line for line in rows if line.startswith(f"| {row.group} | {row.name} |"))
        assert line.count(" (") == 2  # a score and its per-seed values on each test set
    assert "| A - B | test set | A - B (points) | 95% interval |" in text
    for comparison in COMPARISONS:
        names = f"| {ROWS[comparison.a].name} - {ROWS[comparison.b].name} |"
        assert sum(line.startswith(names) for line in rows) == 2  # one line per test set
    for test in (data, other):
        assert "The plain student given all of B reaches" in text and f"`{test}`" in text
    holds = text[text.index("## What holds") : text.index("## Rows")]
    assert "below the 70% where differences between arms tell" in holds  # a tiny budget
    assert holds.count("KD ") >= 2 and "a plain student given the whole budget" in holds
    assert any(verb in holds for verb in ("beats", "does not beat", "loses to"))
    assert "B = 0.2 s" in text and "| Teacher | DFF + SupCon | as DFF" in text


def test_chosen_rows_train_only_the_runs_they_need_and_report_only_themselves(
    ablation, tmp_path: Path
) -> None:
    _, _, data, other = ablation
    doc = tmp_path / "ablations.md"
    args = ["--config-dir", str(CONFIGS), "--data", str(data), "--budget-s", str(BUDGET)]
    args += ["--test-data", str(other), "--seeds", "5", "--rows", "ssl_kd"]
    args += ["--work", str(tmp_path / "work"), "--doc", str(doc), *[f"--set={s}" for s in SETTINGS]]
    assert main(["train", "ablate", *args]) == 0
    trained = {path.name for path in (tmp_path / "work" / "seed5").iterdir()}
    assert trained == {"plain", "dff_supcon", "ssl_two_view", "kd_two_view"}  # plain always
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[1] for line in rows[1:3]] == ["plain", "SSL + KD"]
    compared = [line.split(" | ")[0] for line in rows if " - " in line.split(" | ")[0]]
    assert compared == ["| A - B", "| SSL + KD - plain"]  # the header, then the one comparison
    assert main(["train", "ablate", *args[:-2], "--rows", "kd", "nonsense"]) != 0
