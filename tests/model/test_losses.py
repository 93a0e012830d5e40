"""The losses against values worked out by hand on tiny embeddings."""

import math

import pytest
import torch

from model.losses import kd_loss, nt_xent_loss, supcon_loss

E1, E2 = [1.0, 0.0], [0.0, 1.0]


def test_supcon_with_only_the_other_view_as_positive():
    # Anchor e1: positive e1 (sim 1), negatives e2, e2 (sim 0); every anchor is alike.
    z = torch.tensor([E1, E2])
    loss = supcon_loss((z, z.clone()), torch.tensor([0, 1]), temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)


def test_supcon_counts_other_instances_of_the_class_as_positives():
    # One class: each anchor has positives with sims (0, 1, 0) and the same three in A(i).
    z = torch.tensor([E1, E2])
    loss = supcon_loss((z, z.clone()), torch.tensor([3, 3]), temperature=1.0)
    assert loss.item() == pytest.approx(math.log(math.e + 2) - 1 / 3, rel=1e-6)


def test_supcon_normalises_embeddings_and_uses_the_temperature():
    z = torch.tensor([E1, E2])
    loss = supcon_loss((3 * z, 0.5 * z), torch.tensor([0, 1]), temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), rel=1e-6)


def test_nt_xent_treats_each_video_as_its_own_class():
    z = torch.tensor([E1, E2])
    loss = nt_xent_loss(z, z.clone(), temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), rel=1e-6)


def test_kd_is_t_squared_kl_of_teacher_to_student():
    # softmax(teacher / 4) = (3/4, 1/4); softmax(student / 4) = (1/2, 1/2).
    teacher = torch.tensor([[4 * math.log(3), 0.0]] * 2)
    student = torch.zeros(2, 2)
    expected = 16 * (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5))
    assert kd_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    assert kd_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_gradients_flow_to_the_student_and_not_the_teacher():
    torch.manual_seed(0)
    views = [torch.randn(6, 8, requires_grad=True) for _ in range(2)]
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    student = torch.randn(6, 4, requires_grad=True)
    teacher = torch.randn(6, 4, requires_grad=True)
    total = supcon_loss(views, labels) + nt_xent_loss(*views) + kd_loss(student, teacher)
    total.backward()
    for grad in (views[0].grad, views[1].grad, student.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert teacher.grad is None
