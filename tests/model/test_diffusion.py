"""The noise schedule and DDIM sampler, with no network at all."""

import pytest
import torch

from imusic.model.diffusion import Schedule, ddim_sample


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedule_goes_from_clean_to_noise(kind):
    s = Schedule(1000, kind)
    ab = s.alpha_bar
    assert ab.shape == (1000,)
    assert torch.all(ab[1:] <= ab[:-1])
    assert ab[0] > 0.99 and ab[-1] < 0.01


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="cosine"):
        Schedule(10, "sigmoid")


@pytest.mark.parametrize("steps", [1, 2, 4, 8, 50])
def test_ddim_with_an_oracle_recovers_the_target_exactly(steps):
    """Whatever the step count, a perfect x0 predictor gives back its target: the sampler
    knows nothing of any network."""
    g = torch.Generator().manual_seed(steps)
    target = torch.rand(3, 10, 52, generator=g)
    noise = torch.randn(3, 10, 52, generator=g)
    calls = []

    def oracle(x_t, t):
        calls.append(int(t[0]))
        return target

    out = ddim_sample(Schedule(), oracle, noise, steps)
    assert torch.allclose(out, target, atol=1e-5)
    assert len(calls) == steps and calls == sorted(calls, reverse=True)


def test_ddim_is_deterministic_for_fixed_noise_and_depends_on_it():
    s = Schedule()
    w = torch.randn(52, 52) * 0.3

    def fn(x_t, t):          # a fixed nonlinear map standing in for a network
        return torch.tanh(x_t @ w)

    n1 = torch.randn(2, 8, 52, generator=torch.Generator().manual_seed(1))
    n2 = torch.randn(2, 8, 52, generator=torch.Generator().manual_seed(2))
    a, b = ddim_sample(s, fn, n1, 4), ddim_sample(s, fn, n1, 4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, ddim_sample(s, fn, n2, 4))


def test_inpainting_keeps_known_values():
    s = Schedule()
    known = torch.rand(1, 12, 52)
    mask = torch.zeros(1, 12, 1, dtype=torch.bool)
    mask[:, :5] = True
    out = ddim_sample(s, lambda x, t: torch.zeros_like(x), torch.randn(1, 12, 52), 4,
                      known, mask)
    assert torch.allclose(out[:, :5], known[:, :5], atol=1e-5)
    assert torch.allclose(out[:, 5:], torch.zeros(1, 7, 52), atol=1e-5)


def test_q_sample_mixes_signal_and_noise_by_alpha_bar():
    s = Schedule()
    x0, eps = torch.ones(4, 3, 52), torch.zeros(4, 3, 52)
    t = torch.tensor([0, 10, 500, 999])
    x = s.q_sample(x0, t, eps)
    assert torch.allclose(x[:, 0, 0], s.alpha_bar[t].sqrt())


def test_zero_steps_refused():
    with pytest.raises(ValueError, match="at least one step"):
        Schedule().ddim_timesteps(0)
