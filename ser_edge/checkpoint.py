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
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, List

import torch

from ser_edge.models import ModelConfig, build_model
from ser_edge.runtime.features import FeatureConfig, FeatureConfigError
from ser_edge.runtime.errors import SerEdgeError
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
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'corrupt'})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a ser-edge checkpoint")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('format_version')} "
                              f"is not supported (expected {CHECKPOINT_VERSION})")
    try:
        mcfg = ModelConfig.from_dict(payload["model_config"])
        fcfg = FeatureConfig.from_dict(payload["feature_config"])
        labels = list(payload["labels"])
        state = payload["state_dict"]
    except (KeyError, TypeError, ValueError, FeatureConfigError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata: {e}") from None
    if len(labels) != mcfg.n_classes:
        raise CheckpointError(f"{path}: {len(labels)} labels but the model has {mcfg.n_classes} outputs")
    if fcfg.n_mfcc != mcfg.n_features:
        raise CheckpointError(f"{path}: features have {fcfg.n_mfcc} coefficients but the model "
                              f"expects {mcfg.n_features}")
    ckpt = Checkpoint(mcfg, fcfg, labels, state, dict(payload.get("extra") or {}))
    ckpt.build_model()  # fail now, not at export time, if the weights do not fit
    return ckpt
