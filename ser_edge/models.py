"""Classifiers over MFCC sequences. Every model maps ``(features, lengths) -> logits``:

* ``features``: ``(batch, time, n_mfcc) float32``, zero-padded at the end of the time axis
* ``lengths``: ``(batch,) int64``, valid frames per item (>= 1)
* ``logits``: ``(batch, n_classes) float32``

Padding never changes a prediction: the unidirectional model reads the last *valid* step, and
the BiLSTM runs its backward direction over each item reversed within its own length (a
gather, not ``pack_padded_sequence``), so both export to plain ONNX ``LSTM`` + ``Gather`` ops,
TorchScript and Keras with no packed-sequence machinery.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Dict

import torch
from torch import nn

ARCHITECTURES = ("lstm", "attn_bilstm")
#: Upper bounds that flag a corrupt config (a checkpoint can say anything) before
#: ``build_model`` tries to allocate it: 4096 hidden units x 16 layers is far beyond an edge model.
MAX_HIDDEN, MAX_LAYERS, MAX_FEATURES, MAX_CLASSES = 4096, 16, 4096, 4096


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "lstm"
    n_features: int = 40
    n_classes: int = 8
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {ARCHITECTURES}")
        sizes = {"n_features": (self.n_features, MAX_FEATURES), "n_classes": (self.n_classes, MAX_CLASSES),
                 "hidden_size": (self.hidden_size, MAX_HIDDEN), "num_layers": (self.num_layers, MAX_LAYERS)}
        for name, (value, most) in sizes.items():
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not 1 <= value <= most:
                raise ValueError(f"{name} must be an integer in [1, {most}], got {value!r}")
        dropout = self.dropout
        if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelConfig":
        if not isinstance(d, dict):
            raise TypeError(f"model config must be a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(batch,) -> (batch, max_len) bool``: True on valid frames."""
    steps = torch.arange(max_len, device=lengths.device).unsqueeze(0)
    return steps < lengths.unsqueeze(1)


def reverse_index(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(batch, max_len) int64`` index that reverses each item within its length and leaves the
    padding in place. It is its own inverse."""
    steps = torch.arange(max_len, device=lengths.device).unsqueeze(0)
    rev = lengths.unsqueeze(1) - 1 - steps
    return torch.where(rev >= 0, rev, steps)


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x (batch, time, d)``, ``index (batch, time)`` -> ``x[b, index[b, t]]``."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class LSTMClassifier(nn.Module):
    """Stacked unidirectional LSTM; classifies from the hidden state at the last valid frame."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.lstm = nn.LSTM(cfg.n_features, cfg.hidden_size, cfg.num_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, cfg.n_classes)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(features)  # (B, T, H); trailing padding cannot reach earlier steps
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.size(-1))
        h = out.gather(1, last).squeeze(1)  # (B, H)
        return self.head(self.dropout(h))


class AttentionBiLSTM(nn.Module):
    """BiLSTM with additive attention pooling; the attention softmax is masked over padding."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        drop = cfg.dropout if cfg.num_layers > 1 else 0.0
        # Two unidirectional stacks instead of bidirectional=True: the backward one runs on the
        # length-reversed input, so padding never enters the backward recurrence.
        self.fwd = nn.LSTM(cfg.n_features, cfg.hidden_size, cfg.num_layers, batch_first=True, dropout=drop)
        self.bwd = nn.LSTM(cfg.n_features, cfg.hidden_size, cfg.num_layers, batch_first=True, dropout=drop)
        self.att_proj = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size)
        self.att_score = nn.Linear(cfg.hidden_size, 1, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.hidden_size, cfg.n_classes)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        t = features.size(1)
        rev = reverse_index(lengths, t)
        h_f, _ = self.fwd(features)
        h_b, _ = self.bwd(gather_time(features, rev))
        h = torch.cat([h_f, gather_time(h_b, rev)], dim=-1)  # (B, T, 2H)
        scores = self.att_score(torch.tanh(self.att_proj(h))).squeeze(-1)  # (B, T)
        # A large finite negative rather than -inf: survives int8 graphs and never gives NaN.
        scores = scores.masked_fill(~valid_mask(lengths, t), -1e9)
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        pooled = (weights * h).sum(dim=1)  # (B, 2H)
        return self.head(self.dropout(pooled))


def build_model(cfg: ModelConfig) -> nn.Module:
    return {"lstm": LSTMClassifier, "attn_bilstm": AttentionBiLSTM}[cfg.arch](cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
