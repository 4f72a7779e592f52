"""Shapes and initial behaviour of the networks."""

import torch

from imusic.model.networks import IMUSIC, NetConfig, timestep_embedding


def test_shapes():
    cfg = NetConfig(n_features=36, window=20, d_model=32, n_heads=4, enc_layers=1, den_layers=2)
    net = IMUSIC(cfg)
    x = torch.randn(5, 20, 36)
    tokens, base = net.condition(x)
    assert tokens.shape == (5, 20, 32) and base.shape == (5, 20, 52)
    x0 = net.denoiser(torch.randn(5, 20, 52), torch.randint(0, 1000, (5,)), tokens, base,
                      torch.zeros(5, 20, 52), torch.zeros(5, 20, 1, dtype=torch.bool))
    assert x0.shape == (5, 20, 52)
    assert net.regress(x).shape == (5, 20, 52)


def test_shorter_window_than_configured_works():
    net = IMUSIC(NetConfig(n_features=12, window=30, d_model=16, n_heads=2, enc_layers=1,
                           den_layers=1))
    assert net.regress(torch.randn(2, 10, 12)).shape == (2, 10, 52)


def test_untrained_denoiser_returns_the_stage1_estimate():
    """adaLN-Zero: gates and the output layer start at zero, so x0 = stage-1 estimate."""
    net = IMUSIC(NetConfig(n_features=12, window=16, d_model=16, n_heads=2, enc_layers=1,
                           den_layers=2))
    tokens, base = net.condition(torch.randn(3, 16, 12))
    x0 = net.denoiser(torch.randn(3, 16, 52), torch.tensor([0, 500, 999]), tokens, base,
                      torch.zeros(3, 16, 52), torch.zeros(3, 16, 1, dtype=torch.bool))
    assert torch.allclose(x0, base)


def test_timestep_embedding_distinguishes_steps():
    e = timestep_embedding(torch.tensor([0, 1, 500]), 32)
    assert e.shape == (3, 32)
    assert not torch.allclose(e[0], e[1]) and not torch.allclose(e[1], e[2])
