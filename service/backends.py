"""Ways to run one student network, and choosing the fastest one that agrees with fp32.

What is fastest depends on the machine (AVX-512 bf16, VNNI or neither, core count) and on the
model's size, so nothing is assumed: at start-up each candidate is timed on a calibration batch and
judged against plain fp32 PyTorch on the agreement clips (the artifact's own, held aside from its
training data, else the calibration batch), and the fastest one within the `Acceptance` bounds is
served. A candidate that fails to build (e.g. an export the runtime cannot load) is reported and
skipped, never fatal; one outside the bounds is refused, with its numbers.

Every backend takes uint8 frames `B x T x S x S x 3` and returns probabilities `B x classes`;
`start` returns a function that waits for them, so a GPU backend can copy the next batch while
the current one computes.
"""

import copy
import hashlib
import logging
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.clip import ClipSpec
from model.export import INPUT, OUTPUT, export_onnx
from model.networks import Student
from model.precision import cpu_has_native_bf16, mixed_precision, roomy_signal_stack
from service.int8 import int8_model

log = logging.getLogger(__name__)
# The ONNX exporter's optimiser logs each of its hundreds of rewrites at INFO.
for _chatty in ("onnxscript", "onnx_ir"):
    logging.getLogger(_chatty).setLevel(logging.WARNING)

Wait = Callable[[], np.ndarray]


class Backend(ABC):
    name: str
    pipelined = False
    """True when `start` returns before the work is done, so batches may overlap."""

    @abstractmethod
    def start(self, frames: np.ndarray) -> Wait:
        """Begin inference on uint8 frames; the returned function gives the probabilities."""

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.start(frames)()


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


class TorchCpu(Backend):
    """Eager PyTorch in fp32, or bf16 autocast with channels-last-3d weights and activations
    (the layout oneDNN's bf16 convolutions want)."""

    def __init__(self, network: Student, spec: ClipSpec, bf16: bool = False) -> None:
        self.name = "bf16" if bf16 else "fp32"
        self.spec = spec
        self.bf16 = bf16
        self.layout = torch.channels_last_3d if bf16 else torch.contiguous_format
        # The bf16 copy gets its own weights in the other layout; fp32 keeps serving as is.
        self.network = copy.deepcopy(network).to(memory_format=self.layout) if bf16 else network

    def start(self, frames: np.ndarray) -> Wait:
        with torch.inference_mode():
            x = self.spec.to_input(torch.from_numpy(frames)).contiguous(memory_format=self.layout)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.network(x).logits
            probs = logits.float().softmax(dim=1).numpy()
        return lambda: probs


class OnnxRuntime(Backend):
    name = "onnx"

    def __init__(self, onnx_path: Path, spec: ClipSpec, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.spec = spec

    def start(self, frames: np.ndarray) -> Wait:
        x = self.spec.to_input(torch.from_numpy(frames)).numpy()
        (logits,) = self.session.run([OUTPUT], {INPUT: x})
        probs = _softmax(logits)
        return lambda: probs


class OpenVino(Backend):
    """OpenVINO on the CPU from the ONNX file or an INT8 model quantised from it, with float layers
    in fp32 or bf16: bf16 runs on the CPU's AVX-512 bf16 / AMX units where it has them. The
    LATENCY hint runs each batch on all threads at once: the worker has one batch in flight."""

    def __init__(
        self, model: Path | object, spec: ClipSpec, threads: int, bf16: bool = False, name: str = ""
    ):
        import openvino

        self.name = name or ("openvino-bf16" if bf16 else "openvino")
        precision = "bf16" if bf16 else "f32"
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        source = str(model) if isinstance(model, Path) else model
        self.model = openvino.Core().compile_model(source, "CPU", config)
        roomy_signal_stack()  # OpenVINO sets this thread one too small for AMX signal frames
        self.spec = spec

    def start(self, frames: np.ndarray) -> Wait:
        x = self.spec.to_input(torch.from_numpy(frames)).numpy()
        probs = _softmax(self.model(x)[0])
        return lambda: probs


class TorchCuda(Backend):
    """The GPU path: uint8 frames go up through pinned memory on a copy stream (4x fewer bytes
    than float input; normalised on the GPU), compute runs on its own stream after the copy's
    event, probabilities come back into pinned memory without blocking. The next batch's upload
    thus overlaps this batch's compute. `amp` runs the network under fp16/bf16 autocast.
    Without `streams` everything runs on the default stream, one batch at a time: the
    comparison that shows what the streams buy."""

    def __init__(self, network: Student, spec: ClipSpec, amp: bool, streams: bool = True) -> None:
        self.name = ("cuda-amp" if amp else "cuda-fp32") + ("" if streams else "-serial")
        self.device = torch.device("cuda")
        self.spec = spec
        self.amp = amp
        self.dtype = mixed_precision(self.device)
        self.network = (
            copy.deepcopy(network).to(self.device).to(memory_format=torch.channels_last_3d)
        )
        self.pipelined = streams
        default = torch.cuda.default_stream(self.device)
        self.copy_stream = torch.cuda.Stream(self.device) if streams else default
        self.compute_stream = torch.cuda.Stream(self.device) if streams else default

    def start(self, frames: np.ndarray) -> Wait:
        host = torch.from_numpy(frames).pin_memory()
        with torch.cuda.stream(self.copy_stream):
            device_frames = host.to(self.device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self.copy_stream)
        with torch.cuda.stream(self.compute_stream), torch.inference_mode():
            self.compute_stream.wait_event(copied)
            # Allocated on the copy stream, used here: keep the allocator from reusing it early.
            device_frames.record_stream(self.compute_stream)
            x = self.spec.to_input(device_frames).contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast("cuda", dtype=self.dtype, enabled=self.amp):
                logits = self.network(x).logits
            probs = logits.float().softmax(dim=1)
            out = torch.empty(probs.shape, dtype=torch.float32, pin_memory=True)
            out.copy_(probs, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.compute_stream)

        # `host` may be freed on return: PyTorch's pinned-memory allocator keeps a block used by
        # a non-blocking copy until the copy's stream has passed it.
        def wait() -> np.ndarray:
            done.synchronize()
            return out.numpy()

        return wait


@dataclass(frozen=True)
class Acceptance:
    """How close to fp32 a candidate must stay to be served."""

    min_agreement: float = 0.99
    """Fraction of the agreement clips whose top-1 label must match fp32's."""
    max_prob_change: float = 0.02
    """Bound on the mean, over the agreement clips, of the largest change of any class's
    probability."""

    def refusal(self, agreement: float, prob_change: float) -> str | None:
        """Why a candidate with these numbers is refused; None when it is not."""
        if agreement < self.min_agreement:
            return f"top-1 agreement {agreement:.4f} < {self.min_agreement}"
        if prob_change > self.max_prob_change:
            return f"mean probability change {prob_change:.4g} > {self.max_prob_change}"
        return None


@dataclass(frozen=True)
class Trial:
    """How a candidate did: its time on the calibration batch, its closeness to fp32 on the
    agreement clips."""

    name: str
    seconds: float | None = None
    """Median time of one calibration batch."""
    agreement: float | None = None
    """Fraction of agreement clips whose top-1 label matches the reference's."""
    prob_change: float | None = None
    """Mean over the agreement clips of the largest change of any class's probability."""
    error: str | None = None
    """Why it could not run here."""
    refused: str | None = None
    """Why it ran but may not serve (outside the `Acceptance` bounds)."""

    @property
    def kept(self) -> bool:
        return self.error is None and self.refused is None

    def describe(self) -> str:
        if self.error:
            return f"{self.name}: {self.error}"
        numbers = (
            f"{self.name}: {(self.seconds or 0) * 1000:.1f} ms, agreement {self.agreement:.4f}, "
            f"probability change {self.prob_change:.4g}"
        )
        return numbers + (f", refused ({self.refused})" if self.refused else "")


def calibration_batch(spec: ClipSpec, batch: int, seed: int = 0) -> np.ndarray:
    """Dark synthetic clips `batch x T x S x S x 3`: a blocky scene drifting one pixel per frame
    under sensor-like noise, so the network sees structure and motion, not only noise."""
    rng = np.random.default_rng(seed)
    t, s = spec.frames, spec.side
    coarse = rng.uniform(0, 40, size=(batch, 4, 4, 3))
    scene = np.kron(coarse, np.ones((1, s // 4 + 1, s // 4 + 1, 1)))[:, :s, :s]
    moving = np.stack([np.roll(scene, k, axis=2) for k in range(t)], axis=1)
    noisy = moving + rng.normal(0, 3, size=moving.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def weights_digest(weights: Path) -> str:
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16]


def onnx_file(network: Student, spec: ClipSpec, weights: Path, cache_dir: Path) -> Path:
    """The network's ONNX export, cached by the weights' content and the clip's shape, so a new
    version re-exports, and so does the same weights' network on clips of another length."""
    path = cache_dir / f"student-{weights_digest(weights)}-{spec.frames}x{spec.crop}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{time.time_ns()}.tmp")
        export_onnx(network, spec, tmp)
        tmp.replace(path)
    return path


def factories(
    network: Student,
    spec: ClipSpec,
    weights: Path,
    cache_dir: Path,
    threads: int,
    cuda: bool,
    cuda_streams: bool = True,
    int8_clips: np.ndarray | None = None,
    cpu: str = "",
) -> dict[str, Callable[[], Backend]]:
    """Every candidate for this machine, built on demand; the first is the reference. INT8 is
    one where the artifact ships calibration clips (`int8_clips`), quantised for CPU kind `cpu`;
    its float layers run in bf16 where the CPU has it natively."""
    if cuda:
        return {
            "cuda-fp32": lambda: TorchCuda(network, spec, amp=False, streams=cuda_streams),
            "cuda-amp": lambda: TorchCuda(network, spec, amp=True, streams=cuda_streams),
        }
    onnx = lambda: onnx_file(network, spec, weights, cache_dir)  # noqa: E731
    candidates = {
        "fp32": lambda: TorchCpu(network, spec),
        "bf16": lambda: TorchCpu(network, spec, bf16=True),
        "onnx": lambda: OnnxRuntime(onnx(), spec, threads),
        "openvino": lambda: OpenVino(onnx(), spec, threads),
        "openvino-bf16": lambda: OpenVino(onnx(), spec, threads, bf16=True),
    }
    bf16 = cpu_has_native_bf16()
    if int8_clips is not None:
        artifact = weights.parent
        candidates["openvino-int8"] = lambda: OpenVino(
            int8_model(artifact, onnx(), spec, int8_clips, cache_dir, cpu),
            spec,
            threads,
            bf16=bf16,
            name="openvino-int8",
        )
    if not bf16:
        # Emulated bf16 is so slow that timing it at start-up would hold a paper-size model's
        # worker for minutes.
        del candidates["bf16"], candidates["openvino-bf16"]
    return candidates


def measure(
    candidates: dict[str, Callable[[], Backend]],
    batch: np.ndarray,
    agreement_clips: np.ndarray | None = None,
    acceptance: Acceptance = Acceptance(),
    repeats: int = 3,
) -> tuple[dict[str, Backend], list[Trial]]:
    """Build every candidate, time it on `batch` and judge it against the first candidate on
    `agreement_clips` (run in batches of `batch`'s size; default: `batch` itself)."""
    clips = batch if agreement_clips is None else agreement_clips
    built: dict[str, Backend] = {}
    trials: list[Trial] = []
    reference: np.ndarray | None = None
    for name, build in candidates.items():
        try:
            backend = build()
            probs = np.concatenate(
                [backend(clips[i : i + len(batch)]) for i in range(0, len(clips), len(batch))]
            )
            backend(batch)  # warm-up at the timed shape
            times = []
            for _ in range(repeats):
                begin = time.perf_counter()
                backend(batch)
                times.append(time.perf_counter() - begin)
        except Exception as exc:  # any failure of a candidate only rules it out
            log.warning("backend %s unavailable: %s", name, exc)
            trials.append(Trial(name, error=f"{type(exc).__name__}: {exc}"))
            continue
        if reference is None:
            reference = probs
        built[name] = backend
        agreement = float((probs.argmax(axis=1) == reference.argmax(axis=1)).mean())
        prob_change = float(np.abs(probs - reference).max(axis=1).mean())
        refused = acceptance.refusal(agreement, prob_change)
        if refused:
            log.warning("backend %s refused: %s", name, refused)
        trials.append(
            Trial(name, statistics.median(times), agreement, round(prob_change, 6), refused=refused)
        )
    return built, trials


def choose(built: dict[str, Backend], trials: list[Trial]) -> Backend:
    """The fastest candidate within the acceptance bounds."""
    kept = [t for t in trials if t.kept]
    if not kept:
        raise RuntimeError("no inference backend works: " + "; ".join(t.describe() for t in trials))
    return built[min(kept, key=lambda t: t.seconds or 0.0).name]
