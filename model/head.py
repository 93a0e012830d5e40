"""BERT temporal head (R(2+1)D-BERT): attention over time replaces global average pooling.

Spatial pooling leaves one token per temporal position; a learned CLS token gathers them through
one pre-norm transformer layer, and the classifier reads the CLS output. Randomly hiding tokens
during training (BERT-style key masking) keeps the head from relying on any single time step.
"""

import math

import torch
from torch import nn


def max_tokens(frames: int, time_strides: int) -> int:
    """Temporal positions left after the backbone's `time_strides` stages that halve time
    (three: ceil(frames / 8))."""
    return math.ceil(frames / 2**time_strides)


class BertHead(nn.Module):
    """`B x C x T' x H' x W'` feature map -> `B x num_classes` logits.

    Accepts any token count up to the `max_tokens` the position table was sized for, so one head
    serves 8-, 16-, 32- and 64-frame clips of a network configured for 64.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        max_tokens: int,
        dim: int | None = None,
        heads: int = 8,
        dropout: float = 0.1,
        token_keep: float = 0.8,
        classifier_dropout: float = 0.8,
    ) -> None:
        super().__init__()
        dim = dim or in_channels
        self.token_keep = token_keep
        self.project = nn.Identity() if dim == in_channels else nn.Linear(in_channels, dim)
        self.cls = nn.Parameter(torch.empty(1, 1, dim))
        self.position = nn.Parameter(torch.empty(1, max_tokens + 1, dim))
        self.encoder = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=4 * dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.classifier = nn.Sequential(nn.Dropout(classifier_dropout), nn.Linear(dim, num_classes))
        if not self.cls.is_meta:  # on meta (as `R2Plus1D._init_weights` says) nothing to draw
            nn.init.normal_(self.cls, std=0.02)
            nn.init.normal_(self.position, std=0.02)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = self.project(features.mean(dim=(3, 4)).transpose(1, 2))  # B x T' x dim
        count = tokens.shape[1]
        if count + 1 > self.position.shape[1]:
            raise ValueError(
                f"{count} temporal tokens exceed the head's position table "
                f"({self.position.shape[1] - 1}); build the network with more frames"
            )
        cls = self.cls.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1) + self.position[:, : count + 1]
        mask = None
        if self.training and self.token_keep < 1.0:
            hidden = torch.rand(x.shape[0], count, device=x.device) >= self.token_keep
            mask = torch.cat([hidden.new_zeros(x.shape[0], 1), hidden], dim=1)
        return self.classifier(self.encoder(x, src_key_padding_mask=mask)[:, 0])
