"""Scoring networks on a data set's test list: top-1, top-5, per-class accuracy, confusion matrix.

The recipes score one centred clip per video: the validation list after every epoch, to select,
and the test list once at the end; `lumos train eval` scores an exported artifact both that way
and with several clips x crops per video, softmax averaged (the paper's test protocol), and
averages over a data set's splits when asked. It scores the recipe's training or validation list
too, as the artifact's recipe held them: a model that scores no better on the clips it trained on
than on the test list underfits, and more data will not help it.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from model.artifact import load_artifact
from model.manifest import Manifest
from training.clips import (
    ClipDataset,
    CropBox,
    centre_crop_box,
    collate_clips,
    crop_clip,
    frame_indices,
    spread_starts,
)
from training.config import DataConfig
from training.datasets import detect_layout
from training.engine import ValidateFn, clip_dataset, init_runtime
from training.splits import Subset
from training.video import VideoError

log = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], torch.Tensor]
"""uint8 `N x T x H x W x 3` clips on the device -> `N x classes` logits."""

CROPS = (1, 3, 10)


def crop_boxes(height: int, width: int, size: int, crops: int) -> list[CropBox]:
    """The test crops of a frame: the centre (1); start, centre and end of the longer side (3);
    the four corners and the centre, each also mirrored (10)."""
    centre = centre_crop_box(height, width, size)
    side_h, side_w, top, left = centre.height, centre.width, centre.top, centre.left
    if crops == 1:
        return [centre]
    if crops == 3:
        along = [(0, left), (top, left), (height - side_h, left)]
        across = [(top, 0), (top, left), (top, width - side_w)]
        return [CropBox(t, x, side_h, side_w) for t, x in (along if height > width else across)]
    if crops == 10:
        corners = [
            (0, 0),
            (0, width - side_w),
            (height - side_h, 0),
            (height - side_h, width - side_w),
        ]
        boxes = [CropBox(t, x, side_h, side_w) for t, x in [*corners, (top, left)]]
        return boxes + [replace(box, flip=True) for box in boxes]
    raise ValueError(f"crops must be one of {CROPS}, got {crops}")


class EvalViews(Dataset):
    """Each test video as `1 + clips x crops` uint8 views: first the single centred clip and centre
    crop, then `clips` evenly spread clips, each in every crop. Decoding (and its errors) is the
    wrapped ClipDataset's."""

    def __init__(self, videos: ClipDataset, clips: int, crops: int) -> None:
        self.videos, self.clips, self.crops = videos, clips, crops

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        try:
            video = self.videos.frames(index)
        except VideoError as error:
            log.warning("skipping unreadable video %s: %s", error.path, error.reason)
            return None
        spec, span, stride = self.videos.spec, self.videos.span, self.videos.stride
        length, height, width = video.shape[:3]
        centre = (spread_starts(length, span, 1)[0], centre_crop_box(height, width, spec.side))
        boxes = crop_boxes(height, width, spec.side, self.crops)
        spread = [(s, b) for s in spread_starts(length, span, self.clips) for b in boxes]
        views = [
            crop_clip(video[frame_indices(length, spec.frames, stride, start)], box, spec.side)
            for start, box in [centre, *spread]
        ]
        return torch.stack(views), self.videos.items[index].label


@torch.no_grad()
def predict(
    forward: Forward, dataset: Dataset, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax scores `N x V x classes` of every view of every readable item, and the labels."""
    scores, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_clips)
    for batch in loader:
        if batch is None:
            continue
        frames, label = batch
        frames = frames.to(device)
        views = frames.shape[1] if frames.ndim == 6 else 1
        logits = forward(frames.reshape(-1, *frames.shape[-4:])).float()
        scores.append(logits.softmax(dim=1).view(len(label), views, -1).cpu())
        labels.append(label)
    if not scores:
        raise ValueError("no readable videos to score")
    return torch.cat(scores), torch.cat(labels)


def score(probabilities: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> dict:
    """Accuracy report of `N x classes` scores: top-1, top-5, per class, confusion (rows: truth)."""
    count = len(classes)
    top = probabilities.topk(min(5, count), dim=1).indices
    predicted = top[:, 0]
    confusion = torch.zeros(count, count, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    totals = confusion.sum(dim=1)
    per_class = {
        name: (float(confusion[i, i] / totals[i]) if totals[i] else None)
        for i, name in enumerate(classes)
    }
    return {
        "top1": float((predicted == labels).float().mean()),
        "top5": float((top == labels[:, None]).any(dim=1).float().mean()),
        "clips": len(labels),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


ModuleForward = Callable[[nn.Module, torch.Tensor], torch.Tensor]
"""(trainable module, uint8 clips on the device) -> logits: how a recipe classifies."""


def validator(
    forward: ModuleForward,
    dataset: ClipDataset,
    classes: Sequence[str],
    batch_size: int,
    device: torch.device,
) -> ValidateFn:
    """Top-1 and top-5 of one centred clip per video of `dataset`, and how many it scored."""

    def validate(module: nn.Module) -> dict[str, float]:
        probabilities, labels = predict(
            lambda frames: forward(module, frames), dataset, batch_size, device
        )
        report = score(probabilities[:, 0], labels, classes)
        return {key: report[key] for key in ("top1", "top5", "clips")}

    return validate


def held_out_scorers(
    forward: ModuleForward,
    data: DataConfig,
    classes: Sequence[str],
    device: torch.device,
    **options: Any,
) -> tuple[ValidateFn | None, ValidateFn | None]:
    """A recipe's (validate, test) for `Trainer.fit`: the validation list, scored after every
    epoch to select, and the test list, scored once at the end to report; None where `data` turns
    one off. `options` are `clip_dataset`'s."""

    def scorer(subset: Subset) -> ValidateFn:
        clips, _ = clip_dataset(data, subset, train=False, **options)
        return validator(forward, clips, classes, data.batch_size, device)

    return (
        scorer("validation") if data.validation else None,
        scorer("test") if data.test else None,
    )


def evaluate_split(
    network: nn.Module,
    manifest: Manifest,
    data: DataConfig,
    subset: Subset,
    views: tuple[int, int],
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Score a student on one of the recipe lists of `data`'s split, cut as `data` says: single
    view and clips x crops."""
    dataset, classes = clip_dataset(data, subset, train=False)
    if list(classes) != manifest.labels:
        raise ValueError(
            f"{data.root} has classes {list(classes)}, the artifact knows {manifest.labels}"
        )
    spec = manifest.clip
    probabilities, labels = predict(
        lambda frames: network(spec.to_input(frames)).logits,
        EvalViews(dataset, *views),
        batch_size,
        device,
    )
    return {
        "single": score(probabilities[:, 0], labels, manifest.labels),
        "multi": score(probabilities[:, 1:].mean(dim=1), labels, manifest.labels),
    }


def evaluate(
    artifact: Path,
    root: Path,
    split: int | Literal["all"] = 1,
    clips: int = 1,
    crops: int = 1,
    stride: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    subset: Subset = "test",
) -> dict[str, Any]:
    """Score an exported student on one split, or on each split and their mean ("all").

    `stride` defaults to the one the artifact was trained with (its provenance), so the clips
    span the same time as in training; a training or validation `subset` is the one its recipe
    used, with the share of training videos it held out to validate on where `root` has no
    validation list.
    """
    network, manifest = load_artifact(artifact)
    runtime = init_runtime(device)
    network = network.to(runtime.device)
    trained = manifest.provenance.get("config", {}).get("data", {})
    if stride is None:
        stride = trained.get("stride", 1)
    held_out = {
        key: trained[key] for key in ("validation_fraction", "validation_seed") if key in trained
    }
    data = DataConfig(root=root, clip=manifest.clip, stride=stride, cache=False, **held_out)
    splits = detect_layout(root).splits(Path(root)) if split == "all" else [split]
    reports = {
        str(number): evaluate_split(
            network,
            manifest,
            data.model_copy(update={"split": number}),
            subset,
            (clips, crops),
            batch_size,
            runtime.device,
        )
        for number in splits
    }
    mean = {
        view: {
            metric: sum(report[view][metric] for report in reports.values()) / len(reports)
            for metric in ("top1", "top5")
        }
        for view in ("single", "multi")
    }
    return {
        "artifact": str(artifact),
        "data": str(root),
        "subset": subset,
        "clips": clips,
        "crops": crops,
        "stride": stride,
        "labels": manifest.labels,
        "splits": reports,
        "mean": mean,
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as a few readable lines: accuracies per split, then per class for each split."""
    multi = f"{report['clips']} clips x {report['crops']} crops"
    where = f"{report['data']}'s {report['subset']} list"
    lines = [f"{report['artifact']} on {where} (single view | {multi})"]
    for split, scores in report["splits"].items():
        single, several = scores["single"], scores["multi"]
        lines.append(
            f"split {split}: top-1 {single['top1']:.3f} | {several['top1']:.3f}, "
            f"top-5 {single['top5']:.3f} | {several['top5']:.3f} ({single['clips']} clips)"
        )
        for name, accuracy in several["per_class"].items():
            lines.append(f"  {name:<10} {'-' if accuracy is None else f'{accuracy:.3f}'}")
    if len(report["splits"]) > 1:
        mean = report["mean"]
        lines.append(f"mean top-1 {mean['single']['top1']:.3f} | {mean['multi']['top1']:.3f}")
    return "\n".join(lines)
