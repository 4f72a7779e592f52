"""Noise schedule and DDIM sampler, independent of any network.

The sampler takes a callable ``x0_fn(x_t, t) -> x0_hat`` (the network wrapped with its
conditioning), so the step count is a run-time choice and the network never sees the schedule
except through the integer timestep it is given (DiT / diffusers style).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

X0Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Schedule:
    """A discrete variance-preserving schedule of ``n_steps`` training timesteps.

    ``alpha_bar[t]`` is the signal fraction at timestep ``t`` (0 = almost clean); the
    cosine form of Nichol & Dhariwal keeps a useful amount of signal at mid steps.
    """

    def __init__(self, n_steps: int = 1000, kind: str = "cosine") -> None:
        if kind == "cosine":
            s = 0.008
            x = torch.linspace(0, n_steps, n_steps + 1, dtype=torch.float64)
            f = torch.cos(((x / n_steps) + s) / (1 + s) * math.pi / 2) ** 2
            ab = (f / f[0])[1:]
        elif kind == "linear":
            betas = torch.linspace(1e-4, 0.02, n_steps, dtype=torch.float64)
            ab = torch.cumprod(1 - betas, 0)
        else:
            raise ValueError(f"unknown schedule kind {kind!r}: use 'cosine' or 'linear'")
        self.n_steps = n_steps
        self.kind = kind
        self.alpha_bar = ab.clamp(1e-5, 1.0).float()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noisy ``x_t`` from clean ``x0`` at integer timesteps ``t`` (B,)."""
        ab = self.alpha_bar.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None,
                         device: torch.device | str = "cpu") -> torch.Tensor:
        """Uniform training timesteps (B,)."""
        return torch.randint(0, self.n_steps, (batch,), generator=generator).to(device)

    def ddim_timesteps(self, steps: int) -> list[int]:
        """The ``steps`` timesteps DDIM visits, from the noisiest down."""
        if steps < 1:
            raise ValueError(f"DDIM needs at least one step, got {steps}")
        steps = min(steps, self.n_steps)
        ts = torch.linspace(self.n_steps - 1, 0, steps).round().long().tolist()
        return ts


@torch.no_grad()
def ddim_sample(schedule: Schedule, x0_fn: X0Fn, noise: torch.Tensor, steps: int,
                known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
                eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Deterministic (``eta=0``) DDIM from the start noise ``noise`` to a clean sample.

    ``known``/``known_mask`` inpaint: where the mask is true, the x0 estimate is replaced by the
    known values at every step, so the sample agrees with them and continues them smoothly
    (the runtime carries its previous output this way). Holding ``noise`` fixed between calls
    makes consecutive samples agree wherever the conditioning agrees.
    """
    x = noise
    ts = schedule.ddim_timesteps(steps)
    ab_all = schedule.alpha_bar.to(noise.device)
    for i, t in enumerate(ts):
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0 = x0_fn(x, tt)
        if known is not None and known_mask is not None:
            x0 = torch.where(known_mask, known, x0)
        ab = ab_all[t]
        ab_prev = ab_all[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, device=x.device)
        eps = (x - ab.sqrt() * x0) / (1 - ab).clamp_min(1e-8).sqrt()
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).clamp_min(0).sqrt()
        dir_xt = (1 - ab_prev - sigma ** 2).clamp_min(0).sqrt() * eps
        x = ab_prev.sqrt() * x0 + dir_xt
        if eta > 0 and i + 1 < len(ts):
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device)
    return x
