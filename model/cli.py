"""`lumos model` subcommands: info, import-ig65m, export-onnx, quantize."""

import argparse
import json
from datetime import UTC, datetime


def register(commands: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the root parser."""
    model = commands.add_parser("model", help="inspect, import and export networks")
    sub = model.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")

    info = sub.add_parser("info", help="parameter counts and GFLOPs of an architecture")
    info.add_argument("--arch", choices=("student", "teacher"), default="student")
    _add_backbone_args(info)
    info.add_argument("--num-classes", type=int, default=11)
    info.add_argument("--frames", type=int, default=64)
    info.add_argument("--crop", type=int, default=112)
    info.add_argument("--ig65m", action="store_true", help="IG-65M checkpoint layout")
    info.add_argument("--fusion", help="teacher only: dff (default), sum, mean, concat, single")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)

    imp = sub.add_parser("import-ig65m", help="artifact from a local IG-65M R(2+1)D checkpoint")
    imp.add_argument("checkpoint", help="a .pth state dict (fc.* keys are dropped)")
    imp.add_argument("--out", required=True, help="artifact directory to write")
    imp.add_argument("--num-classes", type=int, required=True)
    imp.add_argument("--frames", type=int, default=64)
    imp.add_argument("--labels", nargs="+", help="class names (default class_0 ...)")
    imp.add_argument("--version", help="artifact version (default ig65m-<date>)")
    _add_backbone_args(imp)
    imp.set_defaults(run=_import_ig65m)

    onnx = sub.add_parser("export-onnx", help="ONNX file of a student artifact, checked")
    onnx.add_argument("artifact", help="artifact directory")
    onnx.add_argument("--out", required=True, help="ONNX file to write")
    onnx.set_defaults(run=_export_onnx)

    quantize = sub.add_parser(
        "quantize",
        help="calibration clips from the training data and the INT8 form, into the artifact",
        description="Cut one clip from each of the first N training videos per class (as the "
        "service cuts uploads), keep every 4th as NNCF calibration clips and the rest as the "
        "agreement set the service judges every backend on, write them to calibration.npz, "
        "quantise the student to INT8 (model-int8.xml/.bin) and report its agreement with fp32.",
    )
    quantize.add_argument("artifact", help="student artifact directory (written into)")
    quantize.add_argument(
        "--data", help="the training data set's root (default: the one in the manifest)"
    )
    quantize.add_argument("--split", type=int, help="default: the one in the manifest")
    quantize.add_argument("--per-class", type=int, default=14, help="training videos per class")
    quantize.add_argument(
        "--clips-only",
        action="store_true",
        help="write calibration.npz only: the service then quantises on each kind of CPU",
    )
    quantize.set_defaults(run=_quantize)


def _add_backbone_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, default=34, help="10, 18 or 34")
    parser.add_argument("--width", type=int, default=64, help="base channels (64 = paper)")
    parser.add_argument(
        "--stem-stride", type=int, choices=(2, 4), default=2, help="spatial stride of the stem"
    )


def _info(args: argparse.Namespace) -> int:
    from model.manifest import ArchConfig
    from model.profile import profile

    fusion = args.fusion or ("dff" if args.arch == "teacher" else None)
    try:
        arch = ArchConfig(
            kind=args.arch,
            depth=args.depth,
            ig65m=args.ig65m,
            width=args.width,
            stem_stride=args.stem_stride,
            num_classes=args.num_classes,
            frames=args.frames,
            fusion=fusion,
        )
    except ValueError as e:
        raise SystemExit(f"lumos model info: {e}") from e
    result = profile(arch, crop=args.crop)
    if args.json:
        print(json.dumps({"arch": arch.model_dump(), **result.model_dump()}))
    else:
        m = 1e6
        print(f"{arch.kind} R(2+1)D-{arch.depth} width {arch.width}, fusion {arch.fusion}")
        print(f"parameters  {result.params / m:.2f}M")
        print(f"  backbone  {result.backbone_params / m:.2f}M")
        print(f"  head      {result.head_params / m:.2f}M")
        print(f"  fusion    {result.fusion_params / m:.2f}M")
        print(
            f"GFLOPs      {result.gflops:.1f} per {result.frames}x{result.crop}x{result.crop} clip"
        )
    return 0


def _import_ig65m(args: argparse.Namespace) -> int:
    import hashlib
    from pathlib import Path

    from model.artifact import save_artifact
    from model.clip import ClipSpec
    from model.ig65m import import_backbone
    from model.manifest import ArchConfig, Manifest
    from model.networks import Student

    checkpoint = Path(args.checkpoint)
    now = datetime.now(UTC)
    try:
        arch = ArchConfig(
            depth=args.depth,
            ig65m=True,
            width=args.width,
            num_classes=args.num_classes,
            frames=args.frames,
        )
        manifest = Manifest(
            version=args.version or f"ig65m-{now:%Y%m%d}",
            arch=arch,
            labels=args.labels or [f"class_{i}" for i in range(args.num_classes)],
            clip=ClipSpec(frames=args.frames),
            provenance={
                "command": "lumos model import-ig65m",
                "checkpoint": str(checkpoint.resolve()),
                "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
                "created": now.isoformat(),
            },
        )
        network = Student(arch)
        import_backbone(network.backbone, checkpoint)
    except (ValueError, OSError) as e:
        raise SystemExit(f"lumos model import-ig65m: {e}") from e
    print(save_artifact(args.out, network.eval(), manifest))
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from model.artifact import load_artifact
    from model.export import check_onnx, export_onnx

    try:
        network, manifest = load_artifact(args.artifact)
        path = export_onnx(network, manifest.clip, args.out)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"lumos model export-onnx: {e}") from e
    print(f"{path}: max |onnxruntime - torch| = {check_onnx(path, network, manifest.clip):.2e}")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from model.artifact import load_manifest
    from service.int8 import quantize_artifact
    from training.datasets import DatasetError, load_dataset

    artifact = Path(args.artifact)
    try:
        manifest = load_manifest(artifact)
        trained_on = manifest.provenance.get("data", {})
        root = args.data or trained_on.get("root")
        if root is None:
            raise ValueError("the manifest names no training data: pass --data")
        videos = load_dataset(root, args.split or trained_on.get("split"), "train")
        taken: dict[int, int] = {}
        chosen = []
        for item in videos.items:
            if taken.get(item.label, 0) < args.per_class:
                taken[item.label] = taken.get(item.label, 0) + 1
                chosen.append((item.path, item.label))
        report = quantize_artifact(artifact, chosen, ship=not args.clips_only)
    except (ValueError, OSError, DatasetError) as e:
        raise SystemExit(f"lumos model quantize: {e}") from e
    print(report)
    return 0
