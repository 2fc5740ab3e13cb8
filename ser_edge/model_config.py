"""Model hyper-parameters, torch-free: the CLI, recipes and the runtime's metadata read them
without importing torch. The modules themselves are in :mod:`ser_edge.models`."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Dict

ARCHITECTURES = ("lstm", "attn_bilstm", "res_lstm_att", "conv_lstm", "stats_linear")
#: Architectures whose prediction at frame t depends only on frames <= t (stateful streaming).
UNIDIRECTIONAL = ("lstm",)
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
    # conv_lstm only: channels and kernel (frames, odd) of each of conv_layers blocks
    conv_channels: int = 64
    conv_kernel: int = 5
    conv_layers: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {ARCHITECTURES}")
        sizes = {"n_features": (self.n_features, MAX_FEATURES), "n_classes": (self.n_classes, MAX_CLASSES),
                 "hidden_size": (self.hidden_size, MAX_HIDDEN), "num_layers": (self.num_layers, MAX_LAYERS),
                 "conv_channels": (self.conv_channels, MAX_HIDDEN), "conv_kernel": (self.conv_kernel, 31),
                 "conv_layers": (self.conv_layers, 8)}
        for name, (value, most) in sizes.items():
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not 1 <= value <= most:
                raise ValueError(f"{name} must be an integer in [1, {most}], got {value!r}")
        dropout = self.dropout
        if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd (centred), got {self.conv_kernel}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> ModelConfig:
        if not isinstance(d, dict):
            raise TypeError(f"model config must be a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


