"""The usual Python SER stack, the reference the runtime is benchmarked against:
``librosa.load`` + ``librosa.feature.mfcc`` + the PyTorch eager model from the training checkpoint.

It uses exactly the feature parameters stored in the checkpoint (the same ones the runtime reads
from the exported model), so both pipelines compute the same features from the same weights and
should agree on the label; :mod:`run` checks that they do.

Imported by ``run.py`` (warm timings) and by ``_coldstart.py`` (the cold-start child), where
importing this module is part of the cold start being measured.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Tuple

import librosa
import numpy as np
import torch

from ser_edge.models import ModelConfig, build_model
from ser_edge.runtime.features import gain_normalise

#: ``librosa.feature.mfcc(y=...)`` clamps its log-mel spectrogram to 80 dB below the peak.
LIBROSA_TOP_DB = 80.0


def librosa_mfcc(y: np.ndarray, fc: Mapping[str, Any]) -> np.ndarray:
    """``librosa.feature.mfcc`` with the parameters of ``fc`` (a ``FeatureConfig.to_dict()``).
    ``(n_samples,) -> (n_frames, n_mfcc) float32`` (raw, not normalised)."""
    mel = dict(sr=fc["sample_rate"], n_fft=fc["n_fft"], win_length=fc["win_length"], hop_length=fc["hop_length"],
               window=fc["window"], center=True, pad_mode="constant", n_mels=fc["n_mels"], fmin=fc["fmin"],
               fmax=fc["fmax"], htk=False)
    if fc["top_db"] == LIBROSA_TOP_DB:  # the one-call form everybody writes
        ref = librosa.feature.mfcc(y=y, n_mfcc=fc["n_mfcc"], norm="ortho", dct_type=2, **mel)
    else:  # mfcc(y=...) has no top_db argument: go through the log-mel spectrogram
        S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, **mel), top_db=fc["top_db"])
        ref = librosa.feature.mfcc(S=S, n_mfcc=fc["n_mfcc"], norm="ortho", dct_type=2)
    return ref.T.astype(np.float32, copy=False)


def librosa_features(y: np.ndarray, fc: Mapping[str, Any]) -> np.ndarray:
    """The model's whole feature set the usual way: level normalisation (if the model has it;
    librosa has none, so this side calls the runtime's ``gain_normalise`` too), then librosa MFCC
    (or log-mel), ``librosa.feature.delta``, ``chroma_stft`` (tuning 0; frames more than top_db
    below the loudest zeroed, as the model expects).
    ``(n_samples,) -> (n_frames, n_features) float32`` (raw, not normalised)."""
    if fc.get("gain_norm_db") is not None:
        y = gain_normalise(y, fc["sample_rate"], fc["gain_norm_db"])
    if fc.get("base", "mfcc") == "mfcc" and not fc.get("deltas") and not fc.get("n_chroma"):
        return librosa_mfcc(y, fc)
    stft = dict(n_fft=fc["n_fft"], win_length=fc["win_length"], hop_length=fc["hop_length"], window=fc["window"],
                center=True, pad_mode="constant")
    S = np.abs(librosa.stft(y, **stft)) ** 2
    mel = librosa.feature.melspectrogram(S=S, sr=fc["sample_rate"], n_mels=fc["n_mels"], fmin=fc["fmin"],
                                         fmax=fc["fmax"], htk=False)
    db = librosa.power_to_db(mel, top_db=fc["top_db"])
    base = librosa.feature.mfcc(S=db, n_mfcc=fc["n_mfcc"], norm="ortho", dct_type=2) if fc.get("base", "mfcc") \
        == "mfcc" else db
    parts = [base] + [librosa.feature.delta(base, order=k, width=fc.get("delta_width", 9))
                      for k in range(1, fc.get("deltas", 0) + 1)]
    if fc.get("n_chroma"):
        chroma = librosa.feature.chroma_stft(S=S, sr=fc["sample_rate"], n_fft=fc["n_fft"], tuning=0.0,
                                             n_chroma=fc["n_chroma"])
        frame_db = 10 * np.log10(np.maximum(mel.sum(axis=0), 1e-10))
        if fc["top_db"] is not None:
            chroma = chroma * (frame_db >= frame_db.max() - fc["top_db"])
        parts.append(chroma)
    return np.concatenate(parts, axis=0).T.astype(np.float32)


def single_thread_torch() -> None:
    """One intra-op and one inter-op thread, like every other pipeline in the benchmark."""
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already started: harmless
        pass


class UsualStack:
    """WAV path -> label the way a typical PyTorch project does it."""

    def __init__(self, model: torch.nn.Module, feature_config: Mapping[str, Any], labels: List[str]) -> None:
        self.model = model
        self.fc = dict(feature_config)
        self.labels = list(labels)
        self.mean = np.asarray(self.fc["mean"], dtype=np.float32)
        self.std = np.asarray(self.fc["std"], dtype=np.float32)

    @classmethod
    def load(cls, checkpoint_path: str) -> UsualStack:
        """``torch.load`` the checkpoint, rebuild the eager model, load the weights."""
        single_thread_torch()
        payload = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        model = build_model(ModelConfig.from_dict(payload["model_config"]))
        model.load_state_dict(payload["state_dict"])
        return cls(model.eval(), payload["feature_config"], payload["labels"])

    def features(self, path: str) -> np.ndarray:
        """``librosa.load`` (resampled to the model rate) + features + normalisation.
        ``-> (n_frames, n_features) float32``."""
        y, _ = librosa.load(path, sr=self.fc["sample_rate"], mono=True, res_type="soxr_hq")  # librosa's default
        return (librosa_features(y, self.fc) - self.mean) / self.std

    def logits(self, feats: np.ndarray) -> np.ndarray:
        """``(n_frames, n_mfcc) float32 -> (n_classes,) float32`` with the eager model."""
        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(feats)[None]),
                             torch.tensor([len(feats)], dtype=torch.int64))
        return out[0].numpy()

    def predict(self, path: str) -> Tuple[str, np.ndarray]:
        """WAV path -> (label, logits ``(n_classes,) float32``)."""
        logits = self.logits(self.features(path))
        return self.labels[int(np.argmax(logits))], logits
