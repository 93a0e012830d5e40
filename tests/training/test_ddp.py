"""Two processes under torchrun (gloo on CPU) train a tiny student and write the same checkpoint
format as one process; only rank 0 writes, and each rank trains on half of the clips."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service.cli import main
from tests.servers import free_port
from tests.system import hosts as network
from tests.system.hosts import Hosts
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


@pytest.mark.system
@pytest.mark.skipif(not network.available(), reason="network namespaces need root")
def test_two_nodes_over_tcp_train_as_one_node_with_the_same_global_batch(tmp_path: Path) -> None:
    """`torchrun --nnodes 2` with one process on each of two hosts (network namespaces,
    rendezvous and gloo over TCP between them), 2 clips per process, against one process with
    4: the same global batches in the same order (DistributedSampler deals each rank every
    other clip of one permutation), so the runs differ only by batch norm seeing 2 clips rather
    than 4 and by each rank's own augmentation draws."""
    data = tmp_path / "synth"
    write_benchmark(
        SynthConfig(
            out=data,
            clips_per_class=4,
            test_clips_per_class=1,
            frames=(12, 16),
            size=(64, 48),
            workers=1,
        )
    )  # 44 training clips: 11 global batches of 4 in both runs
    single = [*arguments(data, tmp_path / "one"), "--set=data.batch_size=4"]
    assert main(single) == 0
    # Where both start: the same run with a learning rate of nothing (weights as initialised).
    assert main([*arguments(data, tmp_path / "start"), "--set=optim.lr=1e-30"]) == 0
    port = free_port()
    with Hosts(["node-a", "node-b"]) as hosts:
        rendezvous = f"{hosts.addresses['node-a']}:{port}"
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2"]
        torchrun += ["--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint={rendezvous}"]
        torchrun += ["--rdzv_id=lumos-test", "-m", "service.cli"]
        two = [*arguments(data, tmp_path / "two"), "--set=data.batch_size=2"]
        env = {**os.environ, "GLOO_SOCKET_IFNAME": "eth0", "OMP_NUM_THREADS": "1"}
        nodes = [
            subprocess.Popen(
                hosts.command(host, [*torchrun, *two]),
                cwd=DISTILL.parents[2],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for host in ("node-a", "node-b")
        ]
        try:
            outputs = [node.communicate(timeout=500)[0].decode(errors="replace") for node in nodes]
        finally:
            for node in nodes:
                node.kill()
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    start, one, both = (
        load_checkpoint(tmp_path / run / "checkpoints" / "last.pt")["model"]
        for run in ("start", "one", "two")
    )
    assert (steps(tmp_path / "one"), steps(tmp_path / "two")) == (11, 11)
    learned = [n for n, v in start.items() if v.is_floating_point() and "running_" not in n]
    moved_one = torch.cat([(one[n] - start[n]).flatten() for n in learned])
    moved_two = torch.cat([(both[n] - start[n]).flatten() for n in learned])
    agreement = torch.nn.functional.cosine_similarity(moved_one, moved_two, dim=0).item()
    apart = ((moved_two - moved_one).norm() / moved_one.norm()).item()
    print(
        f"two nodes vs one: cosine of the weight updates {agreement:.3f}, "
        f"their difference {apart:.3f} of one node's update"
    )
    assert agreement > 0.9 and apart < 0.5, (agreement, apart)


def steps(run: Path) -> int:
    return load_checkpoint(run / "checkpoints" / "last.pt")["step"]
