"""Two processes under torchrun (gloo on CPU) train a tiny student and write the same checkpoint
format as one process; only rank 0 writes, and each rank trains on half of the clips."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import main
from training.engine import load_checkpoint
from training.synth import SynthConfig, write_benchmark

DISTILL = Path(__file__).parents[2] / "configs" / "cpu-small" / "distill.yaml"
TINY = [
    "optim.epochs=1",
    "data.batch_size=4",
    "data.stride=1",
    "data.clip.frames=8",
    "data.clip.crop=32",
    "data.clip.resize=[44, 32]",
    "arch.width=2",
    "arch.frames=8",
    "arch.head_heads=2",
    "teacher=null",
    "init=null",
]


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    config = SynthConfig(
        out=root, clips_per_class=1, test_clips_per_class=1, frames=(12, 16), size=(64, 48)
    )
    write_benchmark(config)
    return root


def arguments(benchmark: Path, out: Path) -> list[str]:
    settings = [*TINY, f"data.root={benchmark}", f"run.output_dir={out}"]
    return ["train", "distill", "--config", str(DISTILL), *[f"--set={item}" for item in settings]]


def test_two_processes_write_the_single_process_checkpoint_format(
    benchmark: Path, tmp_path: Path
) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*torchrun, "-m", "service.cli", *arguments(benchmark, tmp_path / "ddp")]
    subprocess.run(command, check=True, capture_output=True, timeout=500, cwd=DISTILL.parents[2])
    both = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert main(arguments(benchmark, tmp_path / "single")) == 0
    one = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")

    assert both.keys() == one.keys()
    assert {k: v.shape for k, v in both["model"].items()} == {
        k: v.shape for k, v in one["model"].items()
    }  # no DistributedDataParallel "module." prefix
    assert both["optimizer"]["param_groups"][0].keys() == one["optimizer"]["param_groups"][0].keys()
    # 11 clips: one process takes 2 batches of 4; two take 5 each, so 1 batch of 4 apiece
    assert (one["step"], both["step"]) == (2, 1)
    lines = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").open()]
    assert [line["split"] for line in lines] == ["train", "val"]  # written by rank 0 alone
    assert 0 <= lines[-1]["top1"] <= 1
