"""Training steps: which subnets a phase draws, and one step's summed gradients and losses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compofa.space import get_space
from compofa.supernet import Supernet
from compofa.supernet.train import PhaseConfigError, preset
from compofa.supernet.train.sampling import PhaseSampler
from compofa.supernet.train.step import resize_batch, soft_cross_entropy, train_step


def test_each_phase_draws_only_what_it_unlocks() -> None:
    teacher, kernel, depth_1, _, width_1, _ = preset("ofa")
    assert {str(PhaseSampler(teacher).draw(np.random.default_rng(s), 160)) for s in range(5)} == {
        str(PhaseSampler(teacher).largest(160))}
    assert PhaseSampler(teacher).largest(160).depths == (4,) * 5
    for phase, depths, kernels, expands in ((kernel, {4}, {3, 5, 7}, {6}), (depth_1, {3, 4}, {3, 5, 7}, {6}),
                                            (width_1, {2, 3, 4}, {3, 5, 7}, {4, 6})):
        specs = [PhaseSampler(phase).draw(np.random.default_rng(s), 128) for s in range(40)]
        assert {d for s in specs for d in s.depths} == depths, phase.name
        assert {k for s in specs for k in s.kernel_sizes} == kernels, phase.name
        assert {e for s in specs for e in s.expand_ratios} == expands, phase.name
    compound = preset("compofa")[1]
    specs = [PhaseSampler(compound).draw(np.random.default_rng(s), 128) for s in range(60)]
    assert all(get_space("compofa").contains(s) for s in specs) and len({str(s) for s in specs}) > 40


def test_every_rank_draws_the_same_step() -> None:
    sampler = PhaseSampler(preset("compofa")[2])
    first = sampler.draw_step(seed=3, epoch=1, step=7)
    assert first == PhaseSampler(preset("compofa")[2]).draw_step(seed=3, epoch=1, step=7)
    assert first != sampler.draw_step(seed=3, epoch=1, step=8) and len(first[1]) == 4
    assert first[0] in preset("compofa")[2].resolutions and all(s.resolution == first[0] for s in first[1])


def test_a_phase_that_leaves_a_stage_nothing_is_refused() -> None:
    phase = dataclasses.replace(preset("compofa")[1], depths=(4,), expand_ratios=(3,))  # depth 4 couples to 6
    with pytest.raises(PhaseConfigError, match="leaves stage 0 of compofa no subnet"):
        PhaseSampler(phase)


def test_one_step_sums_the_gradients_of_its_subnets() -> None:
    torch.manual_seed(0)
    supernet = Supernet("mobilenetv3", 1.0).eval()  # eval: no dropout, so runs repeat exactly
    specs = PhaseSampler(preset("compofa")[1]).draw_step(0, 0, 0)[1][:2]
    images, labels = torch.randn(2, 3, 128, 128), torch.tensor([1, 7])
    teacher_logits = torch.randn(2, 1000)
    expected = [torch.zeros_like(p) for p in supernet.parameters()]
    for spec in specs:
        supernet.zero_grad()
        logits = supernet(images, spec)
        loss = F.cross_entropy(logits, labels, label_smoothing=0.1) + 0.5 * soft_cross_entropy(logits, teacher_logits)
        loss.backward()
        for total, p in zip(expected, supernet.parameters()):
            total += p.grad if p.grad is not None else 0
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.0)
    losses = train_step(supernet, supernet, optimizer, images, labels, specs, 0.1, 0.5,
                        teacher=lambda x: teacher_logits)
    for total, p in zip(expected, supernet.parameters()):
        torch.testing.assert_close(p.grad if p.grad is not None else torch.zeros_like(p), total)
    assert losses.loss == pytest.approx(losses.cross_entropy + 0.5 * losses.distillation, rel=1e-5)
    assert 0 <= losses.top1 <= 1


def test_soft_cross_entropy_and_resizing() -> None:
    logits, labels = torch.randn(4, 10), torch.tensor([0, 3, 9, 2])
    confident = F.one_hot(labels, 10).float() * 200  # a teacher certain of the labels
    torch.testing.assert_close(soft_cross_entropy(logits, confident), F.cross_entropy(logits, labels))
    images = torch.randn(2, 3, 224, 224)
    assert resize_batch(images, 160).shape == (2, 3, 160, 160) and resize_batch(images, 224) is images


def test_schedule_warms_up_then_follows_a_cosine_to_zero() -> None:
    from compofa.supernet.train.optim import build_optimizer, learning_rate

    phase = preset("compofa")[2]  # 125 epochs, 5 of warm-up, 0.03 per 256
    steps = 10
    rates = [learning_rate(phase, 1536, step, steps) for step in range(phase.epochs * steps)]
    assert rates[0] == pytest.approx(0.03) and rates[50] == pytest.approx(0.18)  # 0.18 at batch 1536 after warm-up
    small = [learning_rate(phase, 32, step, steps) for step in range(phase.warmup_epochs * steps + 1)]
    # under 256 images the rate never starts above the batch's own (a warm-up down from 0.03 diverged)
    assert small == pytest.approx([0.03 * 32 / 256] * len(small))
    assert all(a <= b for a, b in zip(rates[:50], rates[1:51])) and all(a >= b for a, b in zip(rates[50:], rates[51:]))
    assert rates[-1] < 0.18 * 1e-3
    groups = build_optimizer(Supernet("mobilenetv3", 1.0), phase, 256).param_groups
    assert groups[0]["weight_decay"] == 3e-5 and groups[1]["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in groups[0]["params"]) and all(p.ndim == 1 for p in groups[1]["params"])
    assert groups[0]["nesterov"] and groups[0]["momentum"] == 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (mixed precision runs on CUDA only)")
def test_mixed_precision_step_on_a_gpu() -> None:
    supernet = Supernet("mobilenetv3", 1.0).cuda()
    specs = PhaseSampler(preset("compofa")[1]).draw_step(0, 0, 0)[1][:2]
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cuda")
    images, labels = torch.randn(4, 3, 128, 128, device="cuda"), torch.tensor([1, 2, 3, 4], device="cuda")
    losses = train_step(supernet, supernet, optimizer, images, labels, specs, 0.1, 0.0, scaler=scaler)
    assert np.isfinite(losses.loss) and scaler.get_scale() > 0
