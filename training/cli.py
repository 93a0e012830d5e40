"""`lumos` subcommands of the training package."""

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import get_args

from training.splits import Subset
from training.synth.domains import DOMAINS, SHIFTS


def register(commands: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the root parser."""
    register_data(commands)
    register_train(commands)


def register_data(commands: argparse._SubParsersAction) -> None:
    """`lumos data check|synth|stats`: inspect a data set root, write the generated benchmark,
    measure a root's clips."""
    data = commands.add_parser("data", help="check data sets, generate the dark benchmark")
    actions = data.add_subparsers(dest="action", required=True, metavar="ACTION")

    check = actions.add_parser("check", help="counts per subset and class; missing/bad videos")
    check.add_argument("root", type=Path, help="data set root (layout detected from its lists)")
    check.add_argument("--split", type=int, default=None, help="split number (default: first)")
    check.add_argument("--lists-only", action="store_true", help="read the lists, not the videos")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(run=_data_check)

    synth = actions.add_parser("synth", help="write the generated low-light action benchmark")
    synth.add_argument("--out", type=Path, required=True, help="root to write (ARID v1.0 layout)")
    synth.add_argument("--clips-per-class", type=int, default=100, help="training clips per class")
    synth.add_argument(
        "--val-clips-per-class",
        type=int,
        default=None,
        help="validation clips, what training selects on (default: 20%% of --clips-per-class)",
    )
    synth.add_argument(
        "--test-clips-per-class", type=int, default=None, help="default: 30%% of --clips-per-class"
    )
    synth.add_argument(
        "--seed", type=int, default=0, help="validation and test clips use streams of their own"
    )
    synth.add_argument(
        "--domain",
        choices=tuple(DOMAINS),
        default="train",
        help="shifted: rooms, bodies, mounts and noise no train-domain clip has (a test set); "
        f"shifted-<{'|'.join(SHIFTS)}>: that shift alone",
    )
    synth.add_argument("--frames", type=_frame_range, default=(32, 48), help="e.g. 32..48 or 40")
    synth.add_argument("--size", type=_frame_size, default=(160, 120), help="WxH, both even")
    synth.add_argument("--fps", type=float, default=24.0)
    synth.add_argument("--split", type=int, default=1, help="writes list_cvt/ARID_split<N>_*.txt")
    synth.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    synth.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="a progress bar on stderr (default: only on a terminal)",
    )
    synth.set_defaults(run=_data_synth)

    stats = actions.add_parser(
        "stats", help="luma, decoded noise, legibility and figure height of a root's clips"
    )
    stats.add_argument(
        "root", type=Path, help="data set root (generated roots: noise, legibility, figure height)"
    )
    stats.add_argument("--split", type=int, default=None, help="split number (default: first)")
    stats.add_argument("--limit", type=int, default=None, help="at most N clips per subset")
    stats.add_argument("--json", action="store_true", help="print the report as JSON")
    stats.add_argument(
        "--contact-sheet", type=Path, default=None, help="also write a PNG of brightened frames"
    )
    stats.set_defaults(run=_data_stats)


def _frame_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("..")
    try:
        bounds = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LOW..HIGH, got {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 1 <= LOW <= HIGH, got {text!r}")
    return bounds


def _frame_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        size = int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if min(size) < 16 or size[0] % 2 or size[1] % 2:
        raise argparse.ArgumentTypeError(f"expected even sides of at least 16, got {text!r}")
    return size


def _data_check(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from training.check import check_dataset, format_report
    from training.datasets import DatasetError

    try:
        report = check_dataset(args.root, args.split, args.lists_only)
    except DatasetError as error:
        print(f"lumos data check: {error}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(report), indent=2) if args.json else format_report(report))
    return 0 if report.ok else 1


def _data_synth(args: argparse.Namespace) -> int:
    from training.synth.benchmark import SynthConfig, write_benchmark

    def share(given: int | None, fraction: float) -> int:
        return round(fraction * args.clips_per_class) if given is None else given

    config = SynthConfig(
        out=args.out,
        clips_per_class=args.clips_per_class,
        val_clips_per_class=share(args.val_clips_per_class, 0.2),
        test_clips_per_class=share(args.test_clips_per_class, 0.3),
        seed=args.seed,
        domain=args.domain,
        frames=args.frames,
        size=args.size,
        fps=args.fps,
        split=args.split,
        workers=args.workers,
        progress=args.progress,
    )
    print(json.dumps(write_benchmark(config)))
    return 0


def _data_stats(args: argparse.Namespace) -> int:
    from training.datasets import DatasetError
    from training.synth.stats import root_contact_sheet, root_stats
    from training.video import VideoError

    try:
        report = root_stats(args.root, args.split, args.limit)
        if args.contact_sheet is not None:
            root_contact_sheet(args.root, args.contact_sheet, args.split)
    except (DatasetError, VideoError) as error:
        print(f"lumos data stats: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    summary = report["summary"]
    for key, value in summary.items():
        print(f"{key}: {json.dumps(value)}")
    return 0


def register_train(commands: argparse._SubParsersAction) -> None:
    """`lumos train STAGE`: the localiser and the three recipes, evaluation, the whole pipeline
    and the ablation."""
    train = commands.add_parser("train", help="train, evaluate and ablate the networks")
    stages = train.add_subparsers(dest="stage", required=True, metavar="STAGE")
    recipes = {
        "locate": "the focus square's learned localiser, from a generated benchmark's masks",
        "teacher": "two-stream teacher: dark + Retinex, fusion, CE + SupCon",
        "ssl": "self-supervised student pretraining: NT-Xent on two views",
        "distill": "student: CE + KD from the frozen teacher; exports the artifact",
    }
    for name, summary in recipes.items():
        stage = stages.add_parser(name, help=summary)
        stage.add_argument("--config", type=Path, required=True, help="the stage's YAML config")
        _overrides(stage)
        stage.set_defaults(run=_reported(_train_stage))

    evaluate = stages.add_parser("eval", help="score an artifact on a data set's test list")
    evaluate.add_argument("--artifact", type=Path, required=True)
    evaluate.add_argument("--data", type=Path, required=True, help="data set root")
    evaluate.add_argument(
        "--subset",
        choices=get_args(Subset),
        default="test",
        help="the list to score: train and validation as the artifact's recipe held them (a "
        "model no better on its training clips than on the test list underfits)",
    )
    evaluate.add_argument("--split", type=_split, default=1, help="a number, or 'all' for the mean")
    evaluate.add_argument("--clips", type=int, default=1, help="clips per video, evenly spread")
    evaluate.add_argument("--crops", type=int, choices=(1, 3, 10), default=1)
    evaluate.add_argument("--stride", type=int, default=None, help="default: the training one")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true", help="print the full report as JSON")
    evaluate.set_defaults(run=_reported(_evaluate))

    pipeline = stages.add_parser(
        "pipeline",
        help="locate -> teacher -> ssl -> distill -> eval (the stages the config dir holds)",
    )
    _config_dir(pipeline)
    pipeline.add_argument("--out", type=Path, required=True, help="artifact directory")
    pipeline.add_argument("--work", type=Path, default=Path("runs/pipeline"), help="checkpoints")
    _overrides(pipeline, "STAGE.KEY=VALUE", "STAGE is locate, teacher, ssl, distill or all")
    pipeline.set_defaults(run=_reported(_pipeline))

    ablate = stages.add_parser("ablate", help="the ablation table: every arm at one budget")
    _config_dir(ablate)
    ablate.add_argument(
        "--budget-s",
        type=_seconds,
        required=True,
        help="seconds of training steps each row is given, split between a recipe's stages",
    )
    ablate.add_argument(
        "--test-data",
        type=Path,
        action="append",
        default=[],
        help="a data set root whose test list scores every row; repeatable (default: --data's)",
    )
    ablate.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ablate.add_argument(
        "--rows",
        nargs="+",
        default=None,
        metavar="ROW",
        help="train and report only these rows (plain always; default: all), e.g. plain ssl_kd",
    )
    ablate.add_argument("--work", type=Path, default=Path("runs/ablate"), help="checkpoints")
    ablate.add_argument("--doc", type=Path, default=Path("docs/ablations.md"))
    _overrides(ablate, "STAGE.KEY=VALUE", "STAGE is teacher, ssl, distill or all")
    ablate.set_defaults(run=_reported(_ablate))


def _split(text: str) -> int | str:
    if text == "all" or text.isdigit():
        return text if text == "all" else int(text)
    raise argparse.ArgumentTypeError(f"expected a split number or 'all', got {text!r}")


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected seconds above 0, got {text!r}")
    return seconds


def _reported(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad configs, data roots, checkpoints and artifacts end a train command with their reason
    (exit status 2) instead of a traceback; the process group is left either way."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        import yaml

        from training.datasets import DatasetError
        from training.engine import close_runtime

        try:
            return command(args)
        except (ValueError, OSError, DatasetError, yaml.YAMLError) as error:
            print(f"lumos train {args.stage}: {error}", file=sys.stderr)
            return 2
        finally:
            close_runtime()

    return run


def _config_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-dir", type=Path, required=True, help="locate/teacher/ssl/distill.yaml"
    )
    parser.add_argument("--data", type=Path, required=True, help="data set root")


def _overrides(parser: argparse.ArgumentParser, form: str = "KEY=VALUE", note: str = "") -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar=form,
        help=f"override a config value (dotted key, YAML value); repeatable. {note}",
    )


def _train_stage(args: argparse.Namespace) -> int:
    from training import config as configs
    from training.distill import train_distill
    from training.locate import train_locate
    from training.ssl import train_ssl
    from training.teacher import train_teacher

    if args.stage == "locate":
        config = configs.load_config(configs.LocateConfig, args.config, args.overrides)
        print(json.dumps({"locator": str(train_locate(config))}))
        return 0
    kind, recipe = {
        "teacher": (configs.TeacherConfig, train_teacher),
        "ssl": (configs.SSLConfig, train_ssl),
        "distill": (configs.DistillConfig, train_distill),
    }[args.stage]
    result = recipe(configs.load_config(kind, args.config, args.overrides))
    report = {"best": str(result.best), "metrics": result.metrics, "test": result.test}
    print(json.dumps(report))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate, format_report

    report = evaluate(
        args.artifact,
        args.data,
        args.split,
        args.clips,
        args.crops,
        args.stride,
        args.batch_size,
        args.device,
        args.subset,
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    from training.pipeline import run_pipeline

    report = run_pipeline(args.config_dir, args.data, args.out, args.work, args.overrides)
    if report:  # the main process's
        print(json.dumps(report["summary"], indent=2))
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from training.ablate import ROWS, Setting, run_ablation
    from training.ablation_report import write_report

    tests = tuple(args.test_data) or (args.data,)
    rows = tuple(args.rows or ROWS)
    setting = Setting(args.config_dir, args.data, tests, args.budget_s, tuple(args.overrides), rows)
    write_report(args.doc, setting, run_ablation(setting, args.seeds, args.work))
    return 0
