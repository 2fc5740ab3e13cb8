"""Checkpoint format: one ``torch.save`` dict that carries everything needed to rebuild, resume,
evaluate and export a model. Written atomically; loaded with ``weights_only=True``.

Keys::

    format            "ser-edge-checkpoint"
    format_version    CHECKPOINT_VERSION
    model_config      ModelConfig.to_dict()
    feature_config    FeatureConfig.to_dict()  (with training-set normalisation stats)
    labels            list[str], index = class id
    state_dict        model weights
    extra             dict: epoch, metrics, history, split speakers, optimizer/scheduler state,
                      training arguments, RNG state ... (free-form, JSON/torch-serialisable)
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Dict, List

import torch

from ser_edge.models import ModelConfig, build_model
from ser_edge.runtime.errors import SerEdgeError
from ser_edge.runtime.features import FeatureConfig, FeatureConfigError
from ser_edge.runtime.io import atomic_path

CHECKPOINT_FORMAT = "ser-edge-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(SerEdgeError, ValueError):
    """Not a ser-edge checkpoint, corrupt, or inconsistent with itself."""


@dataclass
class Checkpoint:
    model_config: ModelConfig
    feature_config: FeatureConfig
    labels: List[str]
    state_dict: Dict[str, torch.Tensor]
    extra: Dict[str, Any] = field(default_factory=dict)

    def build_model(self) -> torch.nn.Module:
        """The model with weights loaded, in eval mode."""
        model = build_model(self.model_config)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as e:
            raise CheckpointError(f"weights do not match the model config: {str(e).splitlines()[0]}") from None
        return model.eval()


def save_checkpoint(path: str, ckpt: Checkpoint) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model_config": ckpt.model_config.to_dict(),
        "feature_config": ckpt.feature_config.to_dict(),
        "labels": list(ckpt.labels),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.state_dict.items()},
        "extra": ckpt.extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str) -> Checkpoint:
    """Load and validate. Raises :class:`CheckpointError` with a one-line reason."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, which would execute arbitrary code
        raise CheckpointError(f"{path}: not a ser-edge checkpoint (not a torch file, or it holds objects "
                              "a safe load refuses)") from None
    # Corrupt bytes surface from torch's loader as almost any type (IndexError "pop from empty
    # list", KeyError, struct.error, ...): all of them mean "not a readable checkpoint".
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'corrupt'})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a ser-edge checkpoint")
    version = payload.get("format_version")
    if not isinstance(version, int) or version != CHECKPOINT_VERSION:  # (a tensor here has no truth value)
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('format_version')} "
                              f"is not supported (expected {CHECKPOINT_VERSION})")
    try:
        if not isinstance(payload["feature_config"], dict):
            raise TypeError("feature_config must be a dict")
        mcfg = ModelConfig.from_dict(payload["model_config"])
        fcfg = FeatureConfig.from_dict(payload["feature_config"])
        labels, state, extra = payload["labels"], payload["state_dict"], payload.get("extra", {})
    except (KeyError, TypeError, ValueError, FeatureConfigError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata: {e}") from None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise CheckpointError(f"{path}: labels must be a list of strings")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: state_dict must map parameter names to tensors")
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"{path}: 'extra' must be a dict, got {type(extra).__name__}")
    if len(labels) != mcfg.n_classes:
        raise CheckpointError(f"{path}: {len(labels)} labels but the model has {mcfg.n_classes} outputs")
    if fcfg.n_features != mcfg.n_features:
        raise CheckpointError(f"{path}: features have {fcfg.n_features} columns but the model "
                              f"expects {mcfg.n_features}")
    ckpt = Checkpoint(mcfg, fcfg, labels, state, dict(extra))
    ckpt.build_model()  # fail now, not at export time, if the weights do not fit
    return ckpt
