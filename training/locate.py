"""The localiser's stage (`lumos train locate`): learn where the person is from the benchmark's own
figure masks, before any network that zooms with it trains.

A generated benchmark can draw each of its clips again without noise (`synth.json`), and that
drawing knows which pixels the figure covers. Each of `clips` training videos is cut as the
recipes cut a validation clip (the centred crop and frames, `training.clips`), its mask cut the
same way, and the localiser (`model.locate`) learns per pixel whether the figure covers at least
`cover` of it at some frame. Only the training list is read: the localiser selects nothing on
validation or test clips. Rerun, it keeps the weights it wrote, unless they learnt on clips cut
otherwise (`DataConfig.cut`, recorded in the file).
"""

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from model.artifact import locator_cut, save_locator
from model.focus import shrink
from model.locate import Locator
from training.clips import (
    centre_crop_box,
    crop_clip,
    frame_indices,
    read_clip_video,
    spread_starts,
)
from training.config import LocateConfig
from training.engine import seed_everything
from training.splits import recipe_list
from training.synth.benchmark import SynthConfig, clip_index, read_settings, render

log = logging.getLogger(__name__)

LOCATOR = "locator.safetensors"


def figure_mask(
    settings: SynthConfig, label: int, name: str, indices: torch.Tensor
) -> torch.Tensor:
    """Per pixel of the video at the benchmark's size, the most of it the figure covers at any
    of the frames `indices`: its training clip `name` drawn again without noise."""
    shot, _ = render(settings, "train", label, clip_index(name), noisy=False)
    return torch.from_numpy(np.ascontiguousarray(shot.figure[indices.numpy()].max(0)))


def training_clips(config: LocateConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 `N x T x S x S x 3` centred clips of `config.clips` training videos, spread over the
    list, and their `N x S x S` float masks (the figure's cover, cut and scaled as the clip)."""
    data, spec = config.data, config.data.clip
    settings = read_settings(data.root)  # a root that cannot draw its masks fails here
    items = recipe_list(
        data.root, data.split, "train", data.validation_fraction, data.validation_seed
    ).items
    if not items:
        raise ValueError(f"{data.root} has no training videos in split {data.split} to learn from")
    chosen = [items[int(i)] for i in np.linspace(0, len(items) - 1, min(config.clips, len(items)))]
    span = (spec.frames - 1) * data.stride + 1
    clips, masks = [], []
    for item in chosen:
        video = read_clip_video(item.path, spec, data.stride)
        length, height, width, _ = video.shape
        indices = frame_indices(length, spec.frames, data.stride, spread_starts(length, span, 1)[0])
        box = centre_crop_box(height, width, spec.side)
        clips.append(shrink(crop_clip(video[indices], box, spec.side), spec.detail))
        cover = figure_mask(settings, item.label, item.path.stem, indices)
        # Area-averaged to the videos' decode size (the cover of each of its pixels), then cut
        # and scaled down as the clip is.
        cover = F.interpolate(cover[None, None], size=(height, width), mode="area")[0, ..., None]
        masks.append(shrink(crop_clip(cover, box, spec.side), spec.detail)[0, ..., 0])
    return torch.stack(clips), torch.stack(masks)


def train_locate(config: LocateConfig) -> Path:
    """Train the localiser and write it to `run.output_dir/locator.safetensors`; its path."""
    out = config.run.output_dir / LOCATOR
    if config.run.resume and out.is_file() and locator_cut(out) == config.data.cut():
        log.info("locate: keeping %s", out)
        return out
    seed_everything(config.run.seed)
    started = time.perf_counter()
    clips, masks = training_clips(config)
    log.info("locate: %d clips and masks in %.0f s", len(clips), time.perf_counter() - started)
    targets = (masks >= config.cover).float()
    locator = Locator()
    optimizer = torch.optim.AdamW(locator.parameters(), lr=config.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps)
    weight = torch.tensor(config.positive_weight)
    locator.train()
    for step in range(config.steps):
        batch = torch.randint(len(clips), (config.batch_size,))
        logits = locator(clips[batch])
        loss = F.binary_cross_entropy_with_logits(logits, targets[batch], pos_weight=weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == config.steps - 1:
            log.info("locate: step %d, loss %.4f", step, loss.item())
    log.info("locate: trained in %.0f s", time.perf_counter() - started)
    return save_locator(locator.eval(), out, config.data.cut())
