"""Parameter ranges of the domains: `train` (what every training, validation and test clip is
drawn from), `shifted` (a test set whose rooms, bodies, camera mounts and noise no `train` clip
has, so that it measures generalisation rather than memory) and one `shifted-<group>` per group of
`SHIFTS`, which shifts that group alone, so that a test set can say which shift costs a model what.

Each range is a union of intervals, each style a set of names; every range and style set of
`shifted` is disjoint from `train`'s (a test checks it). Actions, light levels and the rest are
shared: the shift is in what the scene looks like, not in what happens in it.
"""

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # numpy stays out of the import, so that `lumos` parses its arguments fast
    import numpy as np

DomainName = Literal[
    "train",
    "shifted",
    "shifted-mount",
    "shifted-rooms",
    "shifted-bodies",
    "shifted-noise",
]
Ranges = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Domain:
    """What a domain's clips are drawn from: ranges (unions of intervals) and style names."""

    camera_height: Ranges
    """Metres above the floor: eye level to an elevated CCTV mount."""
    fov: Ranges
    """Horizontal field of view, degrees."""
    walls: tuple[str, ...]
    """Wall textures (see `scene.WALLS`)."""
    clothing: tuple[str, ...]
    """Clothing patterns (see `body.PATTERNS`)."""
    stature: Ranges
    """Body height, metres."""
    girth: Ranges
    """Limb and torso thickness against an average build."""
    read_noise: Ranges
    """Sensor read noise, electrons."""
    row_noise: Ranges
    """Per-row, per-frame offset noise, electrons."""
    lights: tuple[str, ...]
    """Light colours (see `camera.LIGHTS`)."""


DOMAINS: dict[str, Domain] = {
    "train": Domain(
        camera_height=((1.4, 3.5),),
        fov=((50.0, 70.0),),
        walls=("plain", "blotchy", "panelled"),
        clothing=("plain", "stripes", "mottled"),
        stature=((1.55, 1.95),),
        girth=((0.85, 1.15),),
        read_noise=((4.0, 8.0),),
        row_noise=((0.2, 0.8),),
        lights=("sodium", "tungsten", "led", "infrared"),
    ),
    "shifted": Domain(
        camera_height=((0.7, 1.0), (3.6, 4.5)),
        fov=((38.0, 48.0), (72.0, 90.0)),
        walls=("brick", "tiled"),
        clothing=("checks", "blocks"),
        stature=((1.3, 1.5), (1.96, 2.05)),
        girth=((1.18, 1.35),),
        read_noise=((9.0, 13.0),),
        row_noise=((0.9, 1.5),),
        lights=("fluorescent", "magenta"),
    ),
}
SHIFTS: dict[str, tuple[str, ...]] = {
    "mount": ("camera_height", "fov"),
    "rooms": ("walls", "lights"),
    "bodies": ("clothing", "stature", "girth"),
    "noise": ("read_noise", "row_noise"),
}
"""What `shifted` changes, in groups of fields that change together."""
DOMAINS.update(
    {
        f"shifted-{group}": replace(
            DOMAINS["train"], **{name: getattr(DOMAINS["shifted"], name) for name in names}
        )
        for group, names in SHIFTS.items()
    }
)
DOMAIN_IDS = {name: number for number, name in enumerate(DOMAINS)}
"""The domain's word in every clip's generator seed: no two domains share a stream."""

RANGE_FIELDS = tuple(field.name for field in fields(Domain) if field.type is Ranges)


def draw(rng: "np.random.Generator", ranges: Ranges) -> float:
    """A uniform draw from a union of intervals (each interval weighted by its width)."""
    widths = [high - low for low, high in ranges]
    total = sum(widths)
    low, high = ranges[int(rng.choice(len(ranges), p=[width / total for width in widths]))]
    return float(rng.uniform(low, high))


def pick(rng: "np.random.Generator", names: tuple[str, ...]) -> str:
    """One of `names`, uniformly."""
    return names[int(rng.integers(len(names)))]


def domain(name: str) -> Domain:
    """The domain called `name`, or a ValueError that lists the known ones."""
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}: expected one of {', '.join(DOMAINS)}")
    return DOMAINS[name]
