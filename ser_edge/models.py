"""Classifiers over MFCC sequences. Every model maps ``(features, lengths) -> logits``:

* ``features``: ``(batch, time, n_mfcc) float32``, zero-padded at the end of the time axis
* ``lengths``: ``(batch,) int64``, valid frames per item (>= 1)
* ``logits``: ``(batch, n_classes) float32``

Architectures (``ModelConfig.arch``):

* ``lstm``: stacked unidirectional LSTM, classifies from the last valid step (streamable).
* ``attn_bilstm``: BiLSTM with masked additive attention pooling.
* ``res_lstm_att``: the ResLSTM-SA family (Mak-Sim/ResLSTM-SER): LSTM(F->F) + residual +
  BatchNorm, LSTM(F->H), masked soft attention, BatchNorm, dropout, linear.
* ``conv_lstm``: a small Conv1d front-end (conv + BatchNorm + ReLU blocks over time) before a
  unidirectional LSTM, pooled by masked attention and the masked mean together.
* ``stats_linear``: the utterance-functionals baseline: masked mean and standard deviation of
  every feature over time, then one linear layer (logistic regression on 2 x F functionals). It
  shows what the sequence models add over statistics of the same features.

Padding never changes a prediction: the unidirectional model reads the last *valid* step, the
BiLSTM runs its backward direction over each item reversed within its own length (a gather, not
``pack_padded_sequence``), attention and mean pooling are masked, BatchNorm statistics are
taken over valid frames only, and conv blocks re-zero the padding after each layer so it looks
exactly like the zero padding of an unbatched clip. Everything exports to plain ONNX ops
(``LSTM``, ``Conv``, ``Gather``, elementwise), TorchScript, the numpy backend and TFLite with no
packed-sequence machinery.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ser_edge.model_config import (  # noqa: F401  (torch-free; re-exported here)
    ARCHITECTURES,
    MAX_CLASSES,
    MAX_FEATURES,
    MAX_HIDDEN,
    MAX_LAYERS,
    UNIDIRECTIONAL,
    ModelConfig,
)


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


def init_lstm(lstm: nn.LSTM) -> None:
    """Xavier-uniform input and recurrent weights, zero biases except the forget gate's, set to 1
    (split over ``b_ih`` and ``b_hh``), which keeps early gradients flowing through time."""
    for name, p in lstm.named_parameters():
        if name.startswith("weight"):
            for gate in p.data.chunk(4, dim=0):
                nn.init.xavier_uniform_(gate)
        else:
            p.data.zero_()
            h = p.size(0) // 4
            p.data[h:2 * h] = 0.5


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the last axis of ``x (..., F)``. In training, ``x (B, T, F)`` takes its batch
    statistics from valid frames only (``mask (B, T)``), so padding never shifts them. In eval
    mode it is the per-feature affine map of the running statistics, exported as such (a
    ``Mul`` + ``Add`` that the exporters fold into the neighbouring layer where they can)."""

    def __init__(self, n: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(n)

    def affine(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode ``(scale, shift)``, each ``(F,)``: ``y = x * scale + shift``."""
        mean, var = self.bn.running_mean, self.bn.running_var
        assert mean is not None and var is not None
        scale = self.bn.weight * torch.rsqrt(var + self.bn.eps)
        return scale, self.bn.bias - mean * scale

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.training:
            if mask is None:
                return self.bn(x)
            out = torch.zeros_like(x)
            out[mask] = self.bn(x[mask])
            return out
        scale, shift = self.affine()
        return x * scale + shift


def masked_softmax_pool(scores: torch.Tensor, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention pooling: ``scores (B, T)``, ``h (B, T, D)``, ``mask (B, T)`` -> ``(B, D)``.
    A large finite negative on padding (not -inf) survives int8 graphs and never gives NaN."""
    weights = torch.softmax(scores.masked_fill(~mask, -1e9), dim=1).unsqueeze(-1)
    return (weights * h).sum(dim=1)


class ResLSTMAttention(nn.Module):
    """ResLSTM-SA: ``x + LSTM_F(x)`` -> BatchNorm -> LSTM_H -> masked soft attention
    (``softmax_t(w . h_t)``) -> BatchNorm -> dropout -> linear. ``num_layers`` is unused (the
    family is defined with exactly these two recurrent layers)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        f, h = cfg.n_features, cfg.hidden_size
        self.lstm1 = nn.LSTM(f, f, 1, batch_first=True)
        self.bn1 = MaskedBatchNorm(f)
        self.lstm2 = nn.LSTM(f, h, 1, batch_first=True)
        self.att = nn.Linear(h, 1)
        self.bn2 = MaskedBatchNorm(h)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(h, cfg.n_classes)
        for lstm in (self.lstm1, self.lstm2):
            init_lstm(lstm)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = valid_mask(lengths, features.size(1))
        r, _ = self.lstm1(features)
        x = self.bn1(features + r, mask)
        h, _ = self.lstm2(x)  # unidirectional: trailing padding never reaches valid steps
        pooled = masked_softmax_pool(self.att(h).squeeze(-1), h, mask)
        return self.head(self.dropout(self.bn2(pooled)))


class ConvLSTM(nn.Module):
    """``conv_layers`` x [Conv1d over time (centred kernel) -> masked BatchNorm -> ReLU -> re-zero
    padding] -> unidirectional LSTM stack -> [masked attention pool, masked mean] -> dropout ->
    linear. The convolutions learn local spectral-temporal patterns (onsets, formant moves) that
    an LSTM on raw frames must otherwise spend capacity on."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c, k = cfg.conv_channels, cfg.conv_kernel
        self.convs = nn.ModuleList(nn.Conv1d(cfg.n_features if i == 0 else c, c, k, padding=k // 2)
                                   for i in range(cfg.conv_layers))
        self.bns = nn.ModuleList(MaskedBatchNorm(c) for _ in range(cfg.conv_layers))
        self.lstm = nn.LSTM(c, cfg.hidden_size, cfg.num_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        init_lstm(self.lstm)
        self.att = nn.Linear(cfg.hidden_size, 1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.hidden_size, cfg.n_classes)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = valid_mask(lengths, features.size(1))
        keep = mask.unsqueeze(-1).to(features.dtype)
        x = features * keep  # whatever the padding holds, the convolutions see zeros there
        for conv, bn in zip(self.convs, self.bns):
            x = conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
            x = torch.relu(bn(x, mask)) * keep
        h, _ = self.lstm(x)
        att = masked_softmax_pool(self.att(h).squeeze(-1), h, mask)
        mean = (h * keep).sum(dim=1) / lengths.to(h.dtype).unsqueeze(-1)
        return self.head(self.dropout(torch.cat([att, mean], dim=-1)))


class StatsLinear(nn.Module):
    """``[masked mean, masked std]`` over time (``(B, 2F)``) -> dropout -> linear. No recurrence:
    logistic regression on utterance functionals, trained by the same loop as the others."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.n_features, cfg.n_classes)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        keep = valid_mask(lengths, features.size(1)).unsqueeze(-1).to(features.dtype)
        n = lengths.to(features.dtype).unsqueeze(-1)
        x = features * keep
        mean = x.sum(dim=1) / n
        var = ((x - mean.unsqueeze(1)) * keep).pow(2).sum(dim=1) / n
        return self.head(self.dropout(torch.cat([mean, torch.sqrt(var + 1e-8)], dim=-1)))


def build_model(cfg: ModelConfig) -> nn.Module:
    return {"lstm": LSTMClassifier, "attn_bilstm": AttentionBiLSTM, "res_lstm_att": ResLSTMAttention,
            "conv_lstm": ConvLSTM, "stats_linear": StatsLinear}[cfg.arch](cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
