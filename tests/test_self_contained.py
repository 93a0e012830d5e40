"""A clone with nothing beside it must run: no tracked file may point outside the checkout.

Session work happens with the team's common folder beside the checkout; a reference to it (or to
the machine's work folders) passes here and fails in every user's clone. Run records (bench results,
reliability tables) may name the machine's paths they ran in; code, configs and docs may not point
anywhere but inside the repository.
"""

import re
import subprocess

from tests.paths import REPO

# The common folder beside the checkout, in any spelling that climbs out of the repository to
# reach it, or the machine's work folders. Names are spelled in parts ([k], FOLDER) so that this
# file holds no such reference itself.
FOLDER = "sha" + "red"
OUTSIDE = re.compile(
    rf"(\.\./)+{FOLDER}\b|\b{FOLDER}/data\b|/\s*[\"']{FOLDER}[\"']|(?<![\w.-])/wor[k]/"
)
# Records of runs on a machine, which state where they ran; never read by code.
RECORDS = ("bench/results/", "docs/reliability.md")


def tracked_text_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    return [name for name in listed.split("\0") if name]


def test_no_tracked_file_refers_outside_the_checkout() -> None:
    offenders = []
    for name in tracked_text_files():
        if name.startswith(RECORDS):
            continue
        path = REPO / name
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, "paths outside the checkout:\n" + "\n".join(offenders)


def test_the_guard_sees_a_reference_to_shared() -> None:
    up, folder = "../", FOLDER
    for line in (
        f"ROOT = REPO.parent / 'x' / '{up}{folder}/data'",
        f"see {up}{up}{folder}/",
        "/" + "work/main",
        f'DATA = REPO.parent / "{folder}" / "data"',
    ):
        assert OUTSIDE.search(line), line
    for line in ("one shared R(2+1)D-34", "k8s: - ../../base", "sets/../.."):
        assert not OUTSIDE.search(line), line
