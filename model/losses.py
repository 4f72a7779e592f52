"""The two training losses (``model.train`` runs them; ``torch.nn.Module`` so that
DistributedDataParallel can wrap them).

* :class:`Stage1Loss`: L1 of the encoder's regression over the window's valid frames.
* :class:`Stage2Loss`: the denoiser's x0 loss at a random timestep, with the random known
  prefix the runtime's carry will show it (truth blended with the stage-1 estimate, plus
  noise), L1 on values and on frame-to-frame velocity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from imusic.model.diffusion import Schedule
from imusic.model.networks import IMUSIC

if TYPE_CHECKING:
    from imusic.model.train import TrainConfig


class Stage1Loss(nn.Module):
    """L1 of the stage-1 regression over the valid frames of the window."""

    def __init__(self, net: IMUSIC) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        pred = self.net.regress(x)
        w = m[..., None].float()
        return ((pred - y).abs() * w).sum() / (w.sum() * y.shape[-1]).clamp_min(1)


class Stage2Loss(nn.Module):
    """x0 loss of the denoiser (L1 on values and on frame-to-frame velocity)."""

    def __init__(self, net: IMUSIC, schedule: Schedule, cfg: TrainConfig) -> None:
        super().__init__()
        self.net, self.schedule, self.cfg = net, schedule, cfg

    def forward(self, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        cfg, b = self.cfg, x.shape[0]
        with torch.set_grad_enabled(cfg.encoder_lr_mult > 0):
            tokens, base = self.net.condition(x)
        t = torch.randint(0, self.schedule.n_steps, (b,), device=x.device)
        noise = torch.randn_like(y)
        x_t = self.schedule.q_sample(y, t, noise)
        # a known prefix of random length right before the output frame, slightly corrupted
        o = cfg.past - 1
        k = torch.randint(1, cfg.carry_max + 1, (b,), device=x.device)
        k = torch.where(torch.rand(b, device=x.device) < cfg.p_no_prefix, 0, k)
        pos = torch.arange(y.shape[1], device=x.device)[None]
        mask = ((pos >= o - k[:, None]) & (pos < o))[..., None]
        # the runtime's prefix is the model's own earlier output, not the truth: show a blend
        # of truth and the stage-1 estimate, so the denoiser learns to weigh it, not copy it
        lam = torch.rand(b, 1, 1, device=x.device)
        known = lam * y + (1 - lam) * base.detach()
        known = known + cfg.prefix_noise * torch.rand(b, 1, 1, device=x.device) \
            * torch.randn_like(y)
        pred = self.net.denoiser(x_t, t, tokens, base, known, mask)
        w = m[..., None].float()
        l_val = ((pred - y).abs() * w).sum() / (w.sum() * y.shape[-1]).clamp_min(1)
        wv = w[:, 1:] * w[:, :-1]
        dv = (pred.diff(dim=1) - y.diff(dim=1)).abs()
        l_vel = (dv * wv).sum() / (wv.sum() * y.shape[-1]).clamp_min(1)
        return l_val + cfg.vel_weight * l_vel
