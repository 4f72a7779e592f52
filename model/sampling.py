"""Frame-by-frame sampling with the IMUSIC model: fixed noise across ticks and the previous
output carried as a known prefix, so consecutive frames agree and the output does not tremble.

Used by the live runtime (batch of one) and by evaluation (a batch of recordings side by side).
"""

from __future__ import annotations

import torch

from imusic.model.diffusion import Schedule, ddim_sample
from imusic.model.networks import IMUSIC


class StreamingSampler:
    """Emits the output frame (index ``past - 1`` of the window) for each new feature window.

    ``carry`` frames right before the output frame are taken from what this sampler emitted on
    earlier ticks (0 turns carrying off), weighted ``carry_blend`` against the stage-1 estimate
    of those frames; ``fixed_noise`` keeps the DDIM start noise the same on every tick (False
    draws new noise each tick: independent sampling).
    """

    def __init__(self, net: IMUSIC, schedule: Schedule, past: int, lookahead: int,
                 steps: int = 4, carry: int = 4, batch: int = 1, seed: int = 0,
                 fixed_noise: bool = True, carry_blend: float = 0.5) -> None:
        self.net, self.schedule = net, schedule
        self.past, self.lookahead, self.window = past, lookahead, past + lookahead
        self.steps, self.carry = steps, min(carry, past - 1)
        self.fixed_noise = fixed_noise
        self.carry_blend = carry_blend
        self.gen = torch.Generator().manual_seed(seed)
        n_out = net.cfg.n_out
        self.noise = torch.randn(batch, self.window, n_out, generator=self.gen)
        self.history = torch.zeros(batch, self.carry, n_out)   # emitted frames, oldest first
        self.n_emitted = 0

    def reset(self) -> None:
        """Forget the emitted history (e.g. after a gap in the data)."""
        self.history.zero_()
        self.n_emitted = 0

    @property
    def independent(self) -> bool:
        """True when the next frames do not depend on this sampler's own earlier output
        (``carry_blend`` 0, the carried prefix full, fixed noise, batch of one): consecutive
        ticks can then be sampled as one batch (:meth:`step_independent`)."""
        return (self.carry_blend == 0.0 and self.n_emitted >= self.carry and self.fixed_noise
                and self.noise.shape[0] == 1)

    @torch.no_grad()
    def step_independent(self, feats: torch.Tensor) -> torch.Tensor:
        """Output frames (T, 52) for the windows (T, W, F) of T consecutive ticks of one
        stream, in one batch: the frames :meth:`step` would give one by one, when
        :attr:`independent`."""
        if not self.independent:
            raise RuntimeError("step_independent needs carry_blend 0, a full carried prefix, "
                               "fixed noise and a batch of one; use step()")
        n = feats.shape[0]
        frames = self._sample(feats, self.noise.expand(n, -1, -1),
                              self.history.expand(n, -1, -1))
        if self.carry > 0:
            self.history = torch.cat([self.history, frames[None]], dim=1)[:, -self.carry:]
        self.n_emitted += n
        return frames

    @torch.no_grad()
    def step(self, feat: torch.Tensor) -> torch.Tensor:
        """Output frames (B, 52) for normalised feature windows (B, W, F)."""
        b = feat.shape[0]
        noise = self.noise[:b] if self.fixed_noise else torch.randn(
            (b, self.window, self.noise.shape[-1]), generator=self.gen)
        frame = self._sample(feat, noise, self.history[:b])
        if self.carry > 0:
            self.history = torch.cat([self.history[:b, 1:], frame[:, None]], dim=1)
        self.n_emitted += 1
        return frame

    def _sample(self, feat: torch.Tensor, noise: torch.Tensor,
                history: torch.Tensor) -> torch.Tensor:
        b = feat.shape[0]
        tokens, base = self.net.condition(feat)
        known = torch.zeros_like(base)
        mask = torch.zeros(b, self.window, 1, dtype=torch.bool)
        k = min(self.carry, self.n_emitted)
        if k > 0:
            o = self.past - 1
            # the carried frames are this sampler's own earlier output, blended with the
            # stage-1 estimate of the same frames (as in training): the blend anchors the
            # prefix to the IMU evidence, so errors cannot build up from frame to frame
            w = self.carry_blend
            known[:, o - k:o] = w * history[:, self.carry - k:] + (1 - w) * base[:, o - k:o]
            mask[:, o - k:o] = True

        def x0_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.net.denoiser(x_t, t, tokens, base, known, mask)

        out = ddim_sample(self.schedule, x0_fn, noise, self.steps, known, mask)
        return out[:, self.past - 1]
