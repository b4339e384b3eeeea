"""NVS-SQA sequence ("angular") model: per-view tokens + sinusoidal positions -> transformer -> 384-d vector.

Spec nvs_sqa.md §1.1, §1.3. The released checkpoint uses model_type "TransEncoder", fusion "last"; the other
options the official code offers (mean / max / attention fusion, LSTM) are available for training.
Upstream: VincentQQu/NVS-SQA@8f3f945 models/sequence_models.py (re-written from the spec, not copied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from nvs_sqa.models.view_encoder import ViewEncoder, ViewEncoderConfig


@dataclass(frozen=True)
class SequenceModelConfig:
    view: ViewEncoderConfig = field(default_factory=ViewEncoderConfig)
    model_type: Literal["TransEncoder", "LSTM"] = "TransEncoder"
    fusion: Literal["last", "mean", "max", "attention"] = "last"
    angular_feat_size: int = 384
    num_layers: int = 2
    nhead: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    grad_checkpoint: bool = False  # official training wraps the transformer in checkpointing
    # official training runs the view CNN once per frame index on the B crops (BatchNorm statistics over B
    # scenes, L calls per sequence); False: all B x L frames in one call (same numbers in eval mode)
    per_frame_bn: bool = False


def sinusoidal_encoding(n: int, d: int, device: torch.device | None = None) -> Tensor:
    """(n, d) float32: PE[p, 2i] = sin(p * exp(-2i ln(1e4) / d)), PE[p, 2i+1] = cos(same)."""
    pos = torch.arange(n, dtype=torch.float32, device=device).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d, dtype=torch.float32, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe


class AttentionFusion(nn.Module):
    """Softmax-weighted sum over sequence positions; scores from one linear layer."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.score = nn.Linear(d, 1)

    def forward(self, x: Tensor) -> Tensor:  # (N, B, D) -> (B, D)
        w = torch.softmax(self.score(x), dim=0)
        return (w * x).sum(dim=0)


class SequenceModel(nn.Module):
    """Frames (B, N, 3, H, W) in [0, 1] -> quality representation (B, angular_feat_size)."""

    def __init__(self, cfg: SequenceModelConfig = SequenceModelConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.view.token_size
        self.view_encoder = ViewEncoder(cfg.view)
        if cfg.model_type == "TransEncoder":
            layer = nn.TransformerEncoderLayer(
                d, cfg.nhead, cfg.dim_feedforward, cfg.dropout, activation="relu", norm_first=False
            )
            self.angular_encoder: nn.Module = nn.TransformerEncoder(
                layer, cfg.num_layers, enable_nested_tensor=False
            )
        else:
            self.angular_encoder = nn.LSTM(
                d, d, cfg.num_layers, dropout=cfg.dropout if cfg.num_layers > 1 else 0.0
            )
        if cfg.fusion == "attention":
            self.attention_fusion = AttentionFusion(d)
        self.fc = nn.Linear(d, cfg.angular_feat_size)

    def encode_views(self, frames: Tensor) -> Tensor:
        """(M, 3, H, W) -> (M, token_size) per-view tokens."""
        return self.view_encoder(frames)

    def forward_tokens(self, tokens: Tensor) -> Tensor:
        """Tokens (N, B, D), sequence-first -> features (B, angular_feat_size)."""
        if self.cfg.model_type == "TransEncoder":
            x = tokens + sinusoidal_encoding(tokens.shape[0], tokens.shape[2], tokens.device).unsqueeze(1)
            if self.cfg.grad_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(self.angular_encoder, x, use_reentrant=False)
            else:
                x = self.angular_encoder(x)
        else:
            x, _ = self.angular_encoder(tokens)
        if self.cfg.fusion == "last":
            pooled = x[-1]
        elif self.cfg.fusion == "mean":
            pooled = x.mean(dim=0)
        elif self.cfg.fusion == "max":
            pooled = x.amax(dim=0)
        else:
            pooled = self.attention_fusion(x)
        return self.fc(pooled)

    def forward(self, frames: Tensor) -> Tensor:
        """(B, N, 3, H, W) -> (B, angular_feat_size)."""
        b, n = frames.shape[:2]
        if self.cfg.per_frame_bn and self.training:
            tokens = torch.stack([self.encode_views(frames[:, i]) for i in range(n)], 0)  # (N, B, D)
            return self.forward_tokens(tokens)
        tokens = self.encode_views(frames.flatten(0, 1)).view(b, n, -1)
        return self.forward_tokens(tokens.transpose(0, 1))
