"""Importing IG-65M-style checkpoints saved from torchvision's VideoResNet."""

import pytest
import torch
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, R2Plus1dStem, VideoResNet

from model.backbone import R2Plus1D, midplanes
from model.ig65m import CheckpointError, import_backbone, read_state
from model.state import StateMismatchError


def torchvision_ig65m(layers: list[int], num_classes: int = 359) -> VideoResNet:
    """The module tree ig65m-pytorch saved: torchvision's, patched to the Caffe2 layout."""
    net = VideoResNet(BasicBlock, [Conv2Plus1D] * 4, layers, R2Plus1dStem, num_classes=num_classes)
    for name, planes in (("layer2", 128), ("layer3", 256), ("layer4", 512)):
        getattr(net, name)[0].conv2[0] = Conv2Plus1D(planes, planes, midplanes(planes, planes))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.eps = 1e-3
            # Non-trivial running statistics, so eval-mode BN is part of what is compared.
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def layer4(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net.stem(x)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        x = getattr(net, name)(x)
    return x


@pytest.fixture(scope="module")
def source() -> VideoResNet:
    torch.manual_seed(0)
    return torchvision_ig65m([2, 2, 2, 2])


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "model_with_module_prefix"])
def test_imported_backbone_reproduces_the_source_features(source, tmp_path, wrap):
    state = source.state_dict()
    if wrap == "state_dict":
        state = {"state_dict": state, "epoch": 3}
    elif wrap == "model_with_module_prefix":
        state = {"model": {f"module.{k}": v for k, v in state.items()}}
    path = tmp_path / "r2plus1d_ig65m.pth"
    torch.save(state, path)

    backbone = R2Plus1D(depth=18, ig65m=True)
    import_backbone(backbone, path)
    x = torch.rand(1, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(layer4(backbone.eval(), x), layer4(source, x))


def test_classifier_keys_are_dropped(source, tmp_path):
    path = tmp_path / "ck.pth"
    torch.save(source.state_dict(), path)
    state = read_state(path)
    assert not any(k.startswith("fc.") for k in state)
    assert set(state) == set(R2Plus1D(18, ig65m=True).state_dict())


def test_torchvision_layout_is_rejected_naming_the_mismatched_convs(tmp_path):
    plain = VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [2, 2, 2, 2], R2Plus1dStem, num_classes=400)
    path = tmp_path / "kinetics.pth"
    torch.save(plain.state_dict(), path)
    with pytest.raises(StateMismatchError, match=r"layer2\.0\.conv2\.0\.0\.weight") as error:
        import_backbone(R2Plus1D(18, ig65m=True), path)
    assert set(error.value.mismatched) >= {
        f"{layer}.0.conv2.0.{i}.weight" for layer in ("layer2", "layer3", "layer4") for i in (0, 3)
    }


def test_missing_and_unexpected_keys_are_named(source, tmp_path):
    state = dict(source.state_dict())
    del state["layer3.1.conv1.1.running_var"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "ck.pth"
    torch.save(state, path)
    with pytest.raises(StateMismatchError) as error:
        import_backbone(R2Plus1D(18, ig65m=True), path)
    assert error.value.missing == ["layer3.1.conv1.1.running_var"]
    assert error.value.unexpected == ["extra.weight"]
    assert "layer3.1.conv1.1.running_var" in str(error.value)


def test_depth_mismatch_is_rejected(source, tmp_path):
    path = tmp_path / "ck.pth"
    torch.save(source.state_dict(), path)
    with pytest.raises(StateMismatchError, match=r"missing keys: .*layer1\.2\."):
        import_backbone(R2Plus1D(34, ig65m=True, width=64), path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"not a checkpoint", "not a loadable"), (None, "no checkpoint")],
)
def test_unreadable_files_raise_checkpoint_error(tmp_path, content, reason):
    path = tmp_path / "bad.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=reason):
        read_state(path)


def test_non_tensor_content_is_rejected(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="state dict of tensors"):
        read_state(path)
