"""The losses besides cross-entropy: SupCon (teacher), NT-Xent (student stage 1), KD (stage 2)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def supcon_loss(
    views: Sequence[torch.Tensor], labels: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) over all views of a batch.

    With z the L2-normalised embeddings of every view stacked (N = views x B anchors), A(i) all
    samples but i, and P(i) those of A(i) with i's label (other instances' views included):

        L = mean_i -1/|P(i)| sum_{p in P(i)} log( e^(s_ip) / sum_{a in A(i)} e^(s_ia) ),
        s_ij = z_i . z_j / tau

    Anchors without any positive are skipped (impossible with two or more views).
    """
    z = F.normalize(torch.cat(list(views)), dim=1)
    targets = labels.repeat(len(views))
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits.log_softmax(dim=1).masked_fill(self_mask, 0.0)
    positives = (targets[:, None] == targets[None, :]) & ~self_mask
    counts = positives.sum(dim=1)
    per_anchor = -(log_prob * positives).sum(dim=1)[counts > 0] / counts[counts > 0]
    return per_anchor.mean()


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent / InfoNCE (SimCLR) for two views `B x D` of the same B videos.

    Each sample's only positive is the other view of its video, every other sample of both views is
    a negative:  L = mean_i -log( exp(z_i.z_j(i) / tau) / sum_{a != i} exp(z_i.z_a / tau) ),
    which is SupCon with the video index as the label.
    """
    return supcon_loss((z1, z2), torch.arange(len(z1), device=z1.device), temperature)


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """Hinton distillation:  L = T^2 * mean_batch KL( softmax(z_t / T) || softmax(z_s / T) ).

    The T^2 factor keeps gradient magnitudes independent of T; the teacher is detached (frozen).
    """
    return (
        F.kl_div(
            F.log_softmax(student_logits / temperature, dim=1),
            F.log_softmax(teacher_logits.detach() / temperature, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        * temperature**2
    )
