"""Backbone, head and the two networks: paper sizes, shapes, and the student/teacher contract."""

import pytest
import torch
from pydantic import ValidationError

from model.backbone import R2Plus1D
from model.manifest import ArchConfig
from model.networks import NetworkOutput, Student, Teacher, build_network
from model.profile import count_params, profile


def paper(**changes: object) -> ArchConfig:
    return ArchConfig(**({"depth": 34, "ig65m": True, "width": 64, "num_classes": 11} | changes))


def on_meta(arch: ArchConfig) -> Student | Teacher:
    with torch.device("meta"):
        return build_network(arch)


def test_paper_student_has_the_papers_67m_parameters():
    student = on_meta(paper())
    assert count_params(student.backbone) == pytest.approx(63.50e6, abs=0.05e6)
    assert count_params(student) == pytest.approx(66.66e6, abs=0.05e6)
    assert count_params(student.head) == pytest.approx(3.16e6, abs=0.01e6)


def test_teacher_adds_only_the_fusion_parameters():
    student = on_meta(paper())
    teacher = on_meta(paper(kind="teacher", fusion="dff"))
    assert count_params(teacher.fusion) > 0
    assert count_params(teacher) - count_params(student) == count_params(teacher.fusion)


def test_ig65m_layout_widens_first_block_conv2_and_uses_caffe2_epsilon():
    with torch.device("meta"):
        ig, tv = R2Plus1D(34, ig65m=True), R2Plus1D(34, ig65m=False)
    for layer, mid in (("layer2", 288), ("layer3", 576), ("layer4", 1152)):
        assert getattr(ig, layer)[0].conv2[0][0].out_channels == mid
        assert getattr(tv, layer)[0].conv2[0][0].out_channels < mid
    epsilons = {m.eps for m in ig.modules() if isinstance(m, torch.nn.BatchNorm3d)}
    assert epsilons == {1e-3}
    assert count_params(tv) < count_params(ig)


def test_paper_layer4_map_for_a_64_frame_clip_is_512x8x7x7():
    with torch.device("meta"):
        features = R2Plus1D(34, ig65m=True)(torch.empty(2, 3, 64, 112, 112))
    assert features.shape == (2, 512, 8, 7, 7)


def test_a_stride_4_stem_sees_112_px_for_the_cost_of_56():
    """Same parameters and the same layer4 map: only the stem's stride changes."""
    fine, coarse = R2Plus1D(18, width=8, stem_stride=4), R2Plus1D(18, width=8)
    assert count_params(fine) == count_params(coarse)
    with torch.no_grad():
        fine_map = fine(torch.rand(1, 3, 8, 112, 112))
        assert fine_map.shape == coarse(torch.rand(1, 3, 8, 56, 56)).shape


def test_depth_10_has_one_block_a_stage_and_depth_18s_output():
    """The CPU student's depth: half of depth 18's blocks, the same layer4 map."""
    shallow, deep = R2Plus1D(10, width=8), R2Plus1D(18, width=8)
    assert [len(getattr(shallow, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert count_params(shallow) < 0.5 * count_params(deep)
    with torch.no_grad():
        clip = torch.rand(1, 3, 8, 56, 56)
        assert shallow(clip).shape == deep(clip).shape == (1, 64, 1, 4, 4)
    with pytest.raises(ValidationError, match="depth"):
        paper(depth=14)


def test_time_strides_keep_the_clips_length_for_the_heads_tokens():
    """An 8-frame clip leaves the paper's backbone one temporal position, so the BERT head has
    nothing to attend over; keeping layer4's length gives it two, with the same weights."""
    arch = ArchConfig(depth=10, ig65m=False, width=8, frames=8, head_heads=4, token_keep=1.0)
    paper_length, kept = (
        build_network(arch.model_copy(update={"time_strides": s})) for s in (3, 2)
    )
    with torch.no_grad():
        clip = torch.rand(1, 3, 8, 56, 56)
        assert paper_length.backbone(clip).shape == (1, 64, 1, 4, 4)
        assert kept.backbone(clip).shape == (1, 64, 2, 4, 4)
        assert kept.eval()(clip).logits.shape == (1, 11)
    assert kept.head.position.shape[1] == 3  # CLS and two tokens
    assert count_params(kept.backbone) == count_params(paper_length.backbone)
    with pytest.raises(ValidationError, match="time_strides"):
        paper(time_strides=4)


def test_mid_multiple_rounds_every_mid_channel_count_and_keeps_the_size():
    """Width 12's exact mids (27, 43, 54, ...) rounded to multiples of 8, within 2% of the
    parameters; IG-65M's fixed shapes refuse it."""
    exact, rounded = (
        on_meta(ArchConfig(depth=18, ig65m=False, width=12, mid_multiple=m)) for m in (1, 8)
    )
    mids = [
        m.out_channels
        for m in rounded.backbone.modules()
        if isinstance(m, torch.nn.Conv3d) and m.kernel_size == (1, 3, 3)
    ]
    assert mids and all(mid % 8 == 0 for mid in mids)
    assert 27 in {
        m.out_channels for m in exact.backbone.modules() if isinstance(m, torch.nn.Conv3d)
    }
    assert count_params(rounded) == pytest.approx(count_params(exact), rel=0.02)
    with pytest.raises(ValidationError, match="mid_multiple"):
        paper(mid_multiple=8)


@pytest.mark.parametrize("frames", [8, 16, 32, 64])
@pytest.mark.parametrize("batch", [1, 3])
def test_student_and_teacher_shapes(tiny, frames, batch):
    dark, enhanced = torch.rand(2, batch, 3, frames, 64, 64)
    student = build_network(tiny()).eval()
    teacher = build_network(tiny(kind="teacher", fusion="dff")).eval()
    with torch.no_grad():
        s = student(dark)
        t = teacher(dark, enhanced)
    assert isinstance(s, NetworkOutput) and isinstance(t, NetworkOutput)
    assert s.logits.shape == t.logits.shape == (batch, 5)
    assert [e.shape for e in s.embeddings] == [(batch, 64)]
    assert [e.shape for e in t.embeddings] == [(batch, 64), (batch, 64)]


def test_embeddings_are_the_per_stream_pooled_layer4_maps(tiny):
    teacher = build_network(tiny(kind="teacher", fusion="sum")).eval()
    dark, enhanced = torch.rand(2, 2, 3, 8, 64, 64)
    with torch.no_grad():
        out = teacher(dark, enhanced)
        expected = teacher.backbone(enhanced).mean(dim=(2, 3, 4))
    torch.testing.assert_close(out.embeddings[1], expected, rtol=1e-4, atol=1e-5)


def test_head_rejects_more_tokens_than_its_position_table(tiny):
    student = build_network(tiny(frames=16)).eval()
    student(torch.rand(1, 3, 16, 64, 64))
    with pytest.raises(ValueError, match="position table"):
        student(torch.rand(1, 3, 32, 64, 64))


def test_token_masking_is_random_in_training_and_off_in_eval(tiny):
    student = build_network(tiny(classifier_dropout=0.0, head_dropout=0.0))
    torch.nn.init.normal_(student.head.position, std=1.0)  # make each token matter
    head, features = student.head, torch.randn(4, 64, 8, 2, 2)
    head.train()
    torch.manual_seed(0)
    runs = [head(features) for _ in range(4)]
    assert any(not torch.allclose(runs[0], r) for r in runs[1:])
    head.eval()
    torch.testing.assert_close(head(features), head(features))


def test_teacher_gradients_reach_backbone_fusion_and_head(tiny):
    teacher = build_network(tiny(kind="teacher", fusion="dff")).train()
    out = teacher(torch.rand(2, 3, 8, 64, 64), torch.rand(2, 3, 8, 64, 64))
    (out.logits.sum() + out.embeddings[1].sum()).backward()
    for part in (teacher.backbone.stem, teacher.fusion, teacher.head.encoder):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_student_starts_from_a_teachers_state_dict(tiny):
    teacher = build_network(tiny(kind="teacher", fusion="dff"))
    student = build_network(tiny())
    shared = {k: v for k, v in teacher.state_dict().items() if not k.startswith("fusion.")}
    student.load_state_dict(shared, strict=True)
    x = torch.rand(1, 3, 8, 64, 64)
    teacher.eval(), student.eval()
    with torch.no_grad():
        torch.testing.assert_close(student.backbone(x), teacher.backbone(x))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"fusion": "dff"}, "no fusion"),
        ({"kind": "teacher"}, "needs a fusion"),
        ({"head_heads": 3}, "divisible"),
        ({"fusion": "max", "kind": "teacher"}, "fusion"),
    ],
)
def test_arch_config_rejects_inconsistent_settings(tiny, changes, reason):
    with pytest.raises(ValidationError, match=reason):
        tiny(**changes)


def test_profile_counts_flops_in_the_literatures_convention():
    result = profile(paper(frames=16), crop=112)
    # R(2+1)D-34 on 16x112x112 is ~150 GFLOPs; the BERT head adds well under 1.
    assert 150 <= result.gflops <= 155
    assert result.params == result.backbone_params + result.head_params
    teacher = profile(paper(kind="teacher", fusion="dff", frames=16))
    assert 2 * result.gflops < teacher.gflops < 2.1 * result.gflops
    assert teacher.fusion_params > 0
