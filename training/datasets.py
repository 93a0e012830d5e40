"""Readers for the dark-video data sets: a root and its own list files -> videos and labels.

The list files are authoritative, exactly as their authors publish them; nothing is re-split or
re-labelled here (`training.splits` holds a recipe's validation videos out of a training list).
Every list line's label is checked against the data set's class table and the class folder in its
path, so a wrong root or a mixed-up list fails loudly instead of training on shuffled labels.
Videos need not exist for the lists to load (`lumos data check --lists-only`).
"""

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ARID_CLASSES = (
    "Drink",
    "Jump",
    "Pick",
    "Pour",
    "Push",
    "Run",
    "Sit",
    "Stand",
    "Turn",
    "Walk",
    "Wave",
)
VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"})

# Lists name the held-out subset "test" or (TSN-style frame lists) "val"; asking for one finds the
# other, so a trainer can always ask for "test". A "validation" list (the generated benchmark's)
# is for model selection and has no alias.
_SUBSET_ALIASES = {"test": "val", "val": "test"}
_SUBSET_ORDER = {"train": 0, "validation": 1, "val": 2, "test": 2, "other": 3, "all": 4}


class DatasetError(Exception):
    """A data set root or list file that cannot be read as the layout it claims to be."""


@dataclass(frozen=True)
class VideoItem:
    """One video (a file, or a folder of frames) and its class index."""

    path: Path
    label: int


@dataclass(frozen=True)
class VideoList:
    """One subset of one split: its videos and the names of the data set's classes."""

    layout: str
    root: Path
    split: int
    subset: str
    classes: tuple[str, ...]
    items: tuple[VideoItem, ...]


class Layout(ABC):
    """How one data set family arranges its lists and videos on disk."""

    name: str

    @abstractmethod
    def matches(self, root: Path) -> bool:
        """Whether `root` looks like this layout."""

    @abstractmethod
    def splits(self, root: Path) -> list[int]:
        """The split numbers `root` provides, first the default."""

    @abstractmethod
    def subsets(self, root: Path, split: int) -> list[str]:
        """The subsets (train, test, ...) of a split."""

    @abstractmethod
    def load(self, root: Path, split: int, subset: str) -> VideoList:
        """The videos of one subset of one split."""

    def resolve_subset(self, root: Path, split: int, subset: str) -> str:
        """`subset`, or its alias (test <-> val) where only that exists."""
        available = self.subsets(root, split)
        if subset not in available and _SUBSET_ALIASES.get(subset) in available:
            return _SUBSET_ALIASES[subset]
        if subset not in available:
            raise DatasetError(
                f"{root} ({self.name}) has no {subset!r} subset in split {split} ({available})"
            )
        return subset


def _numbered_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; published lists often lack the final newline."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror}") from error
    return [
        (number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()
    ]


def _class_table(path: Path) -> tuple[str, ...]:
    """Names by index from an "<index> <name>" table (mapping_table.txt, classInd.txt)."""
    names: dict[int, str] = {}
    for number, line in _numbered_lines(path):
        index, _, name = line.partition("\t") if "\t" in line else line.partition(" ")
        if not index.isdigit() or not name.strip():
            raise DatasetError(f"{path}:{number}: expected '<index> <class>', got {line!r}")
        names[int(index)] = name.strip()
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"{path}: class indices are not 0..{len(names) - 1}")
    return tuple(names[index] for index in range(len(names)))


def _video_root(root: Path, subdirs: tuple[str, ...], relpaths: list[str]) -> Path:
    """The folder the listed paths are relative to: the first candidate holding some of them.

    Data sets ship their videos either in a named subfolder (clips_v1/, videos/) or directly under
    the root; with no videos present (lists only) the named subfolder is assumed.
    """
    candidates = [root / subdir for subdir in subdirs] + [root]
    probes = relpaths[:20]
    for candidate in candidates:
        if any((candidate / relpath).exists() for relpath in probes):
            return candidate
    return next((candidate for candidate in candidates if candidate.is_dir()), root)


def _placeholders_to_regex(pattern: str) -> str:
    """`list_cvt/split_{split}/split{split}_{subset}.txt` -> a regex capturing split and subset."""
    groups = {"split": r"\d+", "subset": r"[A-Za-z]+"}
    seen: set[str] = set()

    def group(match: re.Match[str]) -> str:
        name = match[1]
        if name in seen:
            return f"(?P={name})"
        seen.add(name)
        return f"(?P<{name}>{groups[name]})"

    return re.sub(r"\\\{(split|subset)\\\}", group, re.escape(pattern))


class ListLayout(Layout):
    """A layout driven by per-split list files named after `pattern`.

    `pattern` is relative to the root with `{split}` and `{subset}` placeholders; `parse` turns a
    list line into (relative path, label); `class_table` names the classes (None: from the lists).
    """

    def __init__(
        self,
        name: str,
        pattern: str,
        parse: Callable[[str], tuple[str, int]],
        video_dirs: tuple[str, ...],
        class_table: str | None = None,
        default_classes: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.pattern = pattern
        self.parse = parse
        self.video_dirs = video_dirs
        self.class_table = class_table
        self.default_classes = default_classes
        self._regex = re.compile(_placeholders_to_regex(pattern))

    def _lists(self, root: Path) -> list[tuple[int, str]]:
        found = root.glob(self.pattern.format(split="*", subset="*"))
        matches = (self._regex.fullmatch(path.relative_to(root).as_posix()) for path in found)
        return sorted({(int(m["split"]), m["subset"]) for m in matches if m})

    def matches(self, root: Path) -> bool:
        return bool(self._lists(root))

    def splits(self, root: Path) -> list[int]:
        return sorted({split for split, _ in self._lists(root)})

    def subsets(self, root: Path, split: int) -> list[str]:
        names = {subset for number, subset in self._lists(root) if number == split}
        return sorted(names, key=lambda subset: (_SUBSET_ORDER.get(subset, 9), subset))

    def _list_file(self, root: Path, split: int, subset: str) -> Path:
        return root / self.pattern.format(split=split, subset=subset)

    def _entries(self, path: Path) -> list[tuple[int, str, int]]:
        entries = []
        for number, line in _numbered_lines(path):
            try:
                relpath, label = self.parse(line)
            except ValueError as error:
                raise DatasetError(f"{path}:{number}: cannot parse {line!r}") from error
            entries.append((number, relpath, label))
        return entries

    def _classes(self, root: Path, split: int) -> tuple[str, ...]:
        """Class names from the data set's table, else from the class folders in all the lists."""
        if self.class_table is not None and (root / self.class_table).is_file():
            return _class_table(root / self.class_table)
        if self.default_classes:
            return self.default_classes
        names: dict[int, str] = {}
        for subset in self.subsets(root, split):
            path = self._list_file(root, split, subset)
            for number, relpath, label in self._entries(path):
                name = names.setdefault(label, Path(relpath).parent.name)
                if name != Path(relpath).parent.name:
                    raise DatasetError(f"{path}:{number}: label {label} is also class {name!r}")
        return tuple(
            names.get(index, f"class_{index}") for index in range(max(names, default=-1) + 1)
        )

    def load(self, root: Path, split: int, subset: str) -> VideoList:
        subset = self.resolve_subset(root, split, subset)
        path = self._list_file(root, split, subset)
        classes = self._classes(root, split)
        entries = self._entries(path)
        for number, relpath, label in entries:
            if not 0 <= label < len(classes):
                raise DatasetError(f"{path}:{number}: label {label} outside 0..{len(classes) - 1}")
            folder = Path(relpath).parent.name
            if folder and folder != classes[label]:
                raise DatasetError(
                    f"{path}:{number}: {relpath} has label {label} ({classes[label]}), "
                    f"but lies in folder {folder!r}"
                )
        videos = _video_root(root, self.video_dirs, [relpath for _, relpath, _ in entries])
        items = tuple(VideoItem(videos / relpath, label) for _, relpath, label in entries)
        return VideoList(self.name, root, split, subset, classes, items)


def _parse_arid(line: str) -> tuple[str, int]:
    """ARID: "<running id>\\t<label>\\t<Class>/<clip>"."""
    _, label, relpath = line.split()
    return relpath, int(label)


def _parse_dark48(line: str) -> tuple[str, int]:
    """Dark48: "<class_dir>/<video>.mp4 <label>"."""
    relpath, label = line.rsplit(maxsplit=1)
    return relpath, int(label)


def _parse_frames(line: str) -> tuple[str, int]:
    """TSN-style frame lists: "<relpath> <num_frames> <label>"; the frame count is not trusted."""
    relpath, _, label = line.rsplit(maxsplit=2)
    return relpath, int(label)


class ClassFolders(Layout):
    """No lists: `<Class>/<video>` folders (classes sorted), optionally inside `train/`, `test/`."""

    name = "folders"
    _subset_dirs = ("train", "val", "test")

    @staticmethod
    def _videos(folder: Path) -> list[Path]:
        return sorted(path for path in folder.glob("*/*") if path.suffix.lower() in VIDEO_SUFFIXES)

    def matches(self, root: Path) -> bool:
        return any(self._videos(root / subset) for subset in (*self._subset_dirs, "."))

    def splits(self, root: Path) -> list[int]:
        return [1]

    def subsets(self, root: Path, split: int) -> list[str]:
        present = [subset for subset in self._subset_dirs if self._videos(root / subset)]
        return present or ["all"]

    def load(self, root: Path, split: int, subset: str) -> VideoList:
        available = self.subsets(root, split)
        subset = self.resolve_subset(root, split, subset)
        folders = [root] if available == ["all"] else [root / name for name in available]
        # Classes come from every subset, so train and test share one label numbering.
        classes = tuple(sorted({path.parent.name for f in folders for path in self._videos(f)}))
        index = {name: label for label, name in enumerate(classes)}
        videos = self._videos(root if subset == "all" else root / subset)
        items = tuple(VideoItem(path, index[path.parent.name]) for path in videos)
        return VideoList(self.name, root, split, subset, classes, items)


LAYOUTS: tuple[Layout, ...] = (
    ListLayout(
        "arid_v1",
        "list_cvt/ARID_split{split}_{subset}.txt",
        _parse_arid,
        video_dirs=("clips_v1",),
        class_table="list_cvt/mapping_table.txt",
        default_classes=ARID_CLASSES,
    ),
    ListLayout(
        "arid_v1.5",
        "list_cvt/split_{split}/split{split}_{subset}.txt",
        _parse_arid,
        video_dirs=("clips_v1.5",),
        class_table="list_cvt/mapping_table.txt",
        default_classes=ARID_CLASSES,
    ),
    ListLayout(
        "dark48",
        "annotations/{subset}_split{split}.txt",
        _parse_dark48,
        video_dirs=("videos",),
        class_table="annotations/classInd.txt",
    ),
    ListLayout("frames", "{subset}_rgb_split{split}.txt", _parse_frames, video_dirs=("frames",)),
    ClassFolders(),
)


def detect_layout(root: Path | str) -> Layout:
    """The layout of a data set root, by the list files (or class folders) it holds."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data set root {root} is not a directory")
    for layout in LAYOUTS:
        if layout.matches(root):
            return layout
    known = ", ".join(layout.name for layout in LAYOUTS)
    raise DatasetError(f"{root} matches no known data set layout ({known})")


def resolve_split(layout: Layout, root: Path, split: int | None) -> int:
    """`split`, checked against those `root` has; None is the layout's first."""
    splits = layout.splits(root)
    if split is None:
        return splits[0]
    if split not in splits:
        raise DatasetError(f"{root} ({layout.name}) has no split {split}; it has {splits}")
    return split


def load_dataset(root: Path | str, split: int | None = None, subset: str = "train") -> VideoList:
    """The videos of one subset ("train", "test", ...) of one split; split None is the first."""
    root = Path(root)
    layout = detect_layout(root)
    return layout.load(root, resolve_split(layout, root, split), subset)
