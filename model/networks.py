"""The IMUSIC networks: a stage-1 IMU encoder with a regression head, and a stage-2
transformer denoiser over the blendshape window (x0 prediction, timestep via adaLN-Zero,
conditioned on the encoder's per-frame tokens).

The networks know nothing about the noise schedule: the denoiser gets an integer timestep and
returns its estimate of the clean window; :mod:`model.diffusion` does the rest.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

N_OUT = 52


@dataclass
class NetConfig:
    """Architecture; stored in the checkpoint config."""

    n_features: int
    window: int = 52                 # frames seen: past (incl. the output frame) + look-ahead
    n_out: int = N_OUT
    d_model: int = 64
    n_heads: int = 4
    enc_layers: int = 2
    den_layers: int = 2
    dropout: float = 0.1
    n_timesteps: int = 1000          # only to scale the timestep embedding

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _mlp(d: int, mult: int = 2, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, mult * d), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(mult * d, d))


class IMUEncoder(nn.Module):
    """Transformer over time: IMU features (B, W, F) -> per-frame tokens (B, W, d)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(cfg.n_features, cfg.d_model)
        self.pos = nn.Parameter(torch.randn(cfg.window, cfg.d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, 2 * cfg.d_model,
                                           cfg.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.body = nn.TransformerEncoder(layer, cfg.enc_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """Tokens (B, W, d) for features (B, W, F)."""
        w = feat.shape[1]
        return self.norm(self.body(self.inp(feat) + self.pos[-w:]))


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1.0) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of integer timesteps (B,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * scale * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose norms are shifted, scaled and gated by the timestep
    embedding; the gates start at zero (adaLN-Zero), so each block starts as the identity."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False)
        self.mlp = _mlp(d, 2, dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, W, d), c (B, d)."""
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c)[:, None].chunk(6, dim=-1)
        h = self.norm1(x) * (1 + sc1) + sh1
        x = x + g1 * self.attn(h, h, h, need_weights=False)[0]
        h = self.norm2(x) * (1 + sc2) + sh2
        return x + g2 * self.mlp(h)


class Denoiser(nn.Module):
    """Transformer denoiser over the blendshape window.

    Input per frame: the noisy window ``x_t``, the known values and their mask (the runtime's
    carried prefix; zeros when none) and the stage-1 estimate; plus the encoder's token for the
    frame. Output: the clean window, as the stage-1 estimate plus a learned correction (the
    final layer starts at zero, so an untrained denoiser returns the stage-1 estimate).
    """

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.t_scale = 1000.0 / cfg.n_timesteps
        self.inp = nn.Linear(3 * cfg.n_out + 1, d)
        self.cond = nn.Linear(d, d)
        self.pos = nn.Parameter(torch.randn(cfg.window, d) * 0.02)
        self.t_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(AdaLNBlock(d, cfg.n_heads, cfg.dropout)
                                    for _ in range(cfg.den_layers))
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.out = nn.Linear(d, cfg.n_out)
        for m in (self.final_ada[1], self.out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        self.d = d

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor,
                base: torch.Tensor, known: torch.Tensor, known_mask: torch.Tensor,
                ) -> torch.Tensor:
        """x0 estimate (B, W, 52) from x_t (B, W, 52), timesteps t (B,), tokens (B, W, d),
        stage-1 estimate ``base`` (B, W, 52), ``known`` (B, W, 52) and mask (B, W, 1)."""
        w = x_t.shape[1]
        m = known_mask.to(x_t.dtype)
        h = self.inp(torch.cat([x_t, known * m, base, m], dim=-1))
        h = h + self.cond(tokens) + self.pos[-w:]
        c = self.t_mlp(timestep_embedding(t, self.d, self.t_scale))
        for blk in self.blocks:
            h = blk(h, c)
        sh, sc = self.final_ada(c)[:, None].chunk(2, dim=-1)
        return base + self.out(self.norm(h) * (1 + sc) + sh)


class IMUSIC(nn.Module):
    """Both stages together: ``encoder`` + ``head`` (stage 1) and ``denoiser`` (stage 2)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = IMUEncoder(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.n_out)
        self.denoiser = Denoiser(cfg)

    @torch.no_grad()
    def init_output(self, mean: torch.Tensor) -> None:
        """Start the regression head at the mean face (zero weights, bias = ``mean`` (52,)).

        PyTorch's default init gives a random output of about 0.6 per blendshape (targets are
        near 0.1): L1 + AdamW then spends hundreds of steps undoing it, and a short run scored
        3x worse than the mean face. Starting at the mean face, training only improves on it."""
        self.head.weight.zero_()
        self.head.bias.copy_(mean.to(self.head.bias))

    def condition(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder tokens (B, W, d) and the stage-1 regression (B, W, 52)."""
        tokens = self.encoder(feat)
        return tokens, self.head(tokens)

    def regress(self, feat: torch.Tensor) -> torch.Tensor:
        """Stage-1 prediction (B, W, 52) from features (B, W, F)."""
        return self.condition(feat)[1]
