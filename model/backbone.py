"""R(2+1)D backbone in torchvision's VideoResNet layout, returning the layer4 feature map.

Module names (stem, layer1..layer4 and everything below) are torchvision's, so IG-65M state dicts
(saved from a VideoResNet module tree) load by key. Four departures from torchvision, all options:
`ig65m` reproduces the IG-65M checkpoints' layout, `width` scales every channel count so small
students can train on a CPU, `stem_stride` 4 lets such a student see twice the resolution for
the same cost after the stem (its 7x7 kernel still covers every pixel at stride 4), and depth 10
(one block a stage) halves a step's cost for a student whose budget buys too few steps.

The two building blocks are written out here rather than imported: importing torchvision.models
imports torch._dynamo, which costs every process that serves a model seconds on 2 cores.
"""

import torch
from torch import nn

LAYERS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
PAPER_WIDTH = 64
# Caffe2, where the IG-65M weights were trained, used this epsilon; torchvision uses 1e-5.
IG65M_BN_EPS = 1e-3


def midplanes(inplanes: int, planes: int, multiple: int = 1) -> int:
    """Mid-channels that give a (2+1)D conv the parameter count of the full 3x3x3 conv, rounded
    to the nearest `multiple`: oneDNN's CPU kernels work in blocks of 8 or 16 channels, and odd
    counts such as width 12's 27 fall off them (see `ArchConfig.mid_multiple`)."""
    exact = (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)
    return max(multiple, round(exact / multiple) * multiple)


class Conv2Plus1D(nn.Sequential):
    """A 3x3x3 conv factored into a spatial 1x3x3 and a temporal 3x1x1 conv through `mid`
    channels, with BatchNorm and ReLU between (torchvision's, index for index)."""

    def __init__(
        self, inplanes: int, planes: int, mid: int, stride: int = 1, time_stride: int = 1
    ) -> None:
        super().__init__(
            nn.Conv3d(inplanes, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, planes, (3, 1, 1), (time_stride, 1, 1), (1, 0, 0), bias=False),
        )


class BasicBlock(nn.Module):
    """Two (2+1)D convs and a residual connection (torchvision's BasicBlock, module for module)."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        mid_multiple: int = 1,
        time_stride: int = 1,
    ) -> None:
        super().__init__()
        mid = midplanes(inplanes, planes, mid_multiple)
        self.conv1 = nn.Sequential(
            Conv2Plus1D(inplanes, planes, mid, stride, time_stride),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


class R2Plus1D(nn.Module):
    """R(2+1)D-18/34 without pool and classifier: `B x 3 x T x H x W -> B x C x T/8 x H/16 x W/16`
    (H/32 x W/32 with `stem_stride` 4; T/4 with `time_strides` 2, T/2 with 1).

    With `ig65m`, conv2 of each layer's first block takes its mid-channels from (planes, planes)
    instead of torchvision's (inplanes, planes) (288/576/1152 instead of 230/460/921 at width 64),
    and BatchNorm epsilon is 1e-3: the layout the IG-65M checkpoints were saved in.
    `mid_multiple` rounds every block's mid-channels (1 with `ig65m`, whose shapes are fixed).
    """

    def __init__(
        self,
        depth: int = 34,
        ig65m: bool = False,
        width: int = PAPER_WIDTH,
        stem_stride: int = 2,
        mid_multiple: int = 1,
        time_strides: int = 3,
    ) -> None:
        super().__init__()
        if depth not in LAYERS:
            raise ValueError(f"depth must be one of {sorted(LAYERS)}, got {depth}")
        if not 0 <= time_strides <= 3:
            raise ValueError(
                f"time_strides counts layers 2-4 that halve time: 0-3, got {time_strides}"
            )
        stem_mid = max(1, 45 * width // PAPER_WIDTH)
        # Same indices as torchvision's R2Plus1dStem (45 -> 64 at paper width), width-scaled.
        spatial = (1, stem_stride, stem_stride)
        self.stem = nn.Sequential(
            nn.Conv3d(3, stem_mid, (1, 7, 7), stride=spatial, padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(stem_mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(stem_mid, width, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
        self.out_channels = 8 * width
        self.inplanes = width
        blocks = LAYERS[depth]
        self.layer1 = self._make_layer(width, blocks[0], 1, ig65m, mid_multiple)
        # Layers 2-4 halve the size; the first `time_strides` of them halve the length too.
        halves = [2 if layer < time_strides else 1 for layer in range(3)]
        self.layer2 = self._make_layer(2 * width, blocks[1], 2, ig65m, mid_multiple, halves[0])
        self.layer3 = self._make_layer(4 * width, blocks[2], 2, ig65m, mid_multiple, halves[1])
        self.layer4 = self._make_layer(8 * width, blocks[3], 2, ig65m, mid_multiple, halves[2])
        self._init_weights()
        if ig65m:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm3d):
                    m.eps = IG65M_BN_EPS

    def _make_layer(
        self,
        planes: int,
        blocks: int,
        stride: int,
        ig65m: bool,
        mid_multiple: int,
        time_stride: int = 1,
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv3d(
                    self.inplanes, planes, 1, stride=(time_stride, stride, stride), bias=False
                ),
                nn.BatchNorm3d(planes),
            )
        first = BasicBlock(self.inplanes, planes, stride, downsample, mid_multiple, time_stride)
        if ig65m:
            first.conv2[0] = Conv2Plus1D(planes, planes, midplanes(planes, planes))
        self.inplanes = planes
        rest = [BasicBlock(planes, planes, mid_multiple=mid_multiple) for _ in range(1, blocks)]
        return nn.Sequential(first, *rest)

    def _init_weights(self) -> None:
        """torchvision's VideoResNet initialisation, so an untrained backbone behaves the same.

        Built on the meta device (to be filled with an artifact's weights) there is nothing to
        draw, and a draw there would import torch._dynamo: seconds of every model load."""
        if self.stem[0].weight.is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)
