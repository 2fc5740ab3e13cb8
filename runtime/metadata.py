"""The metadata every exported model carries, and nothing else the runtime needs to know.

Written by ``ser_edge.export`` into ONNX ``metadata_props``, TorchScript extra files, the
``__metadata__`` entry of the numpy backend's ``.npz``, and for ``.tflite`` files both the
flatbuffer's ``metadata`` table (entry ``ser_edge``, JSON) and a ``<model>.tflite.json`` sidecar
that also holds the file's sha256 (the LiteRT backend checks it before parsing; see
``ser_edge.runtime.backends.litert``). The runtime reads it back with
:meth:`ModelMetadata.from_props` and refuses a model without it.

Keys (all values are strings):

=============================  ===============================================================
``ser_edge.metadata_schema``   integer, :data:`METADATA_SCHEMA_VERSION`
``ser_edge.version``           ser-edge version that exported the model
``ser_edge.feature_config``    :class:`FeatureConfig` as JSON (with normalisation stats)
``ser_edge.labels``            JSON list of class names, index = logit position
``ser_edge.model_config``      JSON object (architecture, sizes); informative
``ser_edge.selftest``          JSON: ``{"sample_rate", "pcm16_b64", "logits", "atol"}`` - a short
                               waveform and the PyTorch fp32 logits for it (optional)
``ser_edge.quantization``      ``"none"`` or e.g. ``"dynamic-int8"``
=============================  ===============================================================
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from .audio import from_pcm16, to_pcm16
from .errors import SerEdgeError
from .features import FeatureConfig, FeatureConfigError

METADATA_SCHEMA_VERSION = 1
PREFIX = "ser_edge."

#: Names of the model's graph inputs/outputs, shared by every format.
INPUT_FEATURES = "features"  # (batch, time, n_features) float32
INPUT_LENGTHS = "lengths"  # (batch,) int64: valid frames per item
OUTPUT_LOGITS = "logits"  # (batch, n_classes) float32


class MetadataError(SerEdgeError, ValueError):
    """A model lacks ser-edge metadata or carries metadata this runtime cannot use."""


# Bounds on what a model's feature config *costs* on a device (docs/robustness.md). Each field
# of a FeatureConfig is validated on its own; these bound what the fields do together, so a
# model from elsewhere cannot make the runtime allocate GiBs, run for minutes or silently
# collapse every clip onto one label. Training configs are not limited by them: they apply
# where a model is loaded (ModelMetadata.from_props).
#: Sample rates a device's audio path can meet (Hz).
MIN_MODEL_RATE, MAX_MODEL_RATE = 4000, 96000
#: Feature frames per second of audio (sample_rate / hop_length): a hop of at least 1 ms.
MAX_FRAMES_PER_S = 1000
#: Largest FFT (samples).
MAX_MODEL_N_FFT = 16384
#: FFT input samples per second of audio (sample_rate * n_fft / hop_length): the STFT's time and
#: memory. At this rate a MAX_PREDICT_S clip's features stay under ~130 MiB (shipped model: 51200).
MAX_STFT_RATE = 1 << 17
#: Feature values per second (frames per second * the widest per-frame feature: mel bands or model input).
MAX_FEATURE_RATE = 1 << 16
#: Normalisation statistics: a std below MIN_STD multiplies features by > 1e6 (every clip saturates to
#: the same label); above MAX_STD or |mean| above MAX_ABS_MEAN the features vanish into the offset.
#: Training floors std at 1e-5 (RunningStats).
MIN_STD, MAX_STD, MAX_ABS_MEAN = 1e-6, 1e6, 1e6


def check_feature_costs(cfg: FeatureConfig, source: str = "model") -> None:
    """Refuse a (field-valid) feature config whose derived costs a device cannot meet.
    Raises :class:`MetadataError` naming the limit; limits are the constants above."""
    rate, hop, n_fft = cfg.sample_rate, cfg.hop_length, cfg.n_fft
    width = max(cfg.n_mels, cfg.n_features)
    std, mean = cfg.std or (1.0,), cfg.mean or (0.0,)  # unfitted: no statistics to bound
    checks = [
        (MIN_MODEL_RATE <= rate <= MAX_MODEL_RATE,
         f"sample_rate {rate} Hz is outside {MIN_MODEL_RATE}..{MAX_MODEL_RATE} Hz"),
        (rate / hop <= MAX_FRAMES_PER_S,
         f"{rate / hop:.0f} frames per second (sample_rate / hop_length) exceeds {MAX_FRAMES_PER_S}"),
        (n_fft <= MAX_MODEL_N_FFT, f"n_fft {n_fft} exceeds {MAX_MODEL_N_FFT}"),
        (rate * n_fft / hop <= MAX_STFT_RATE,
         f"the STFT reads {rate * n_fft / hop:.0f} samples per second of audio (sample_rate * n_fft / "
         f"hop_length), more than {MAX_STFT_RATE}"),
        (rate / hop * width <= MAX_FEATURE_RATE,
         f"{rate / hop * width:.0f} feature values per second exceeds {MAX_FEATURE_RATE}"),
        (min(std) >= MIN_STD and max(std) <= MAX_STD,
         f"normalisation std must lie in [{MIN_STD:g}, {MAX_STD:g}], got {min(std):g}..{max(std):g}"),
        (max(abs(v) for v in mean) <= MAX_ABS_MEAN,
         f"normalisation mean must lie within +-{MAX_ABS_MEAN:g}"),
    ]
    for ok, why in checks:
        if not ok:
            raise MetadataError(f"{source}: feature config beyond what this runtime runs: {why}")


@dataclass(frozen=True, eq=False)
class SelfTest:
    """A parity vector shipped inside the model: a waveform and the logits PyTorch gave for it."""

    sample_rate: int
    waveform: np.ndarray  # (n_samples,) float32, from int16 PCM
    logits: np.ndarray  # (n_classes,) float32
    atol: float = 1e-3

    def __eq__(self, other: object) -> bool:
        # dataclass equality would compare numpy arrays with ==, which is ambiguous
        if not isinstance(other, SelfTest):
            return NotImplemented
        return (self.sample_rate == other.sample_rate and self.atol == other.atol
                and np.array_equal(self.waveform, other.waveform) and np.array_equal(self.logits, other.logits))

    __hash__ = None  # type: ignore[assignment]  # holds arrays: not hashable

    def to_json(self) -> str:
        pcm = to_pcm16(self.waveform).tobytes()
        return json.dumps({
            "sample_rate": int(self.sample_rate),
            "pcm16_b64": base64.b64encode(pcm).decode("ascii"),
            "logits": [float(v) for v in self.logits],
            "atol": float(self.atol),
        })

    @classmethod
    def from_json(cls, text: str) -> SelfTest:
        """Parse; raises ValueError / KeyError / TypeError for a malformed or inconsistent vector."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("self-test must be a JSON object")
        pcm = np.frombuffer(base64.b64decode(d["pcm16_b64"]), dtype="<i2")
        rate, logits, atol = d["sample_rate"], np.asarray(d["logits"], dtype=np.float32), float(d.get("atol", 1e-3))
        if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
            raise ValueError(f"self-test sample_rate must be a positive integer, got {rate!r}")
        if pcm.size == 0 or logits.ndim != 1 or not np.all(np.isfinite(logits)):
            raise ValueError("self-test needs a non-empty waveform and a 1-D list of finite logits")
        if not (math.isfinite(atol) and atol >= 0):
            raise ValueError(f"self-test atol must be finite and >= 0, got {atol}")
        return cls(rate, from_pcm16(pcm), logits, atol)

    @staticmethod
    def quantise_waveform(y: np.ndarray) -> np.ndarray:
        """Round-trip through int16 so the reference logits are computed on exactly what ships."""
        return from_pcm16(to_pcm16(y))


@dataclass(frozen=True)
class ModelMetadata:
    feature_config: FeatureConfig
    labels: List[str]
    model_config: Dict[str, Any] = field(default_factory=dict)
    version: str = ""
    quantization: str = "none"
    selftest: Optional[SelfTest] = None
    schema: int = METADATA_SCHEMA_VERSION

    def to_props(self) -> Dict[str, str]:
        props = {
            PREFIX + "metadata_schema": str(self.schema),
            PREFIX + "version": self.version,
            PREFIX + "feature_config": self.feature_config.to_json(),
            PREFIX + "labels": json.dumps(list(self.labels)),
            PREFIX + "model_config": json.dumps(self.model_config, sort_keys=True),
            PREFIX + "quantization": self.quantization,
        }
        if self.selftest is not None:
            props[PREFIX + "selftest"] = self.selftest.to_json()
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelMetadata:
        """Parse and validate. Raises :class:`MetadataError` with ``source`` in the message."""
        if PREFIX + "feature_config" not in props or PREFIX + "labels" not in props:
            raise MetadataError(
                f"{source}: no ser-edge metadata (feature config and labels). Export models with "
                "`ser-edge export`; a bare model would risk features that differ from training.")
        # Containers such as the npz backend's JSON can hold any value; the format says strings.
        not_str = sorted(str(k) for k, v in props.items() if str(k).startswith(PREFIX) and not isinstance(v, str))
        if not_str:
            raise MetadataError(f"{source}: corrupt ser-edge metadata: {', '.join(not_str)} must be strings")
        try:
            schema = int(props.get(PREFIX + "metadata_schema", "-1"))
        except ValueError:
            schema = -1
        if schema != METADATA_SCHEMA_VERSION:
            raise MetadataError(f"{source}: metadata schema {schema} is not supported "
                                f"(this runtime reads {METADATA_SCHEMA_VERSION})")
        try:
            fcfg = FeatureConfig.from_json(props[PREFIX + "feature_config"])
            labels = json.loads(props[PREFIX + "labels"])
            mcfg = json.loads(props.get(PREFIX + "model_config", "{}"))
            selftest = SelfTest.from_json(props[PREFIX + "selftest"]) if PREFIX + "selftest" in props else None
        # RecursionError: absurdly nested JSON; OverflowError: int(Infinity)
        except (FeatureConfigError, ValueError, KeyError, TypeError, RecursionError, OverflowError) as e:
            raise MetadataError(f"{source}: corrupt ser-edge metadata: {str(e)[:200]}") from None
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise MetadataError(f"{source}: labels must be a non-empty list of strings")
        if not fcfg.is_normalised:
            raise MetadataError(f"{source}: feature config has no normalisation statistics")
        check_feature_costs(fcfg, source)
        if not isinstance(mcfg, dict):
            raise MetadataError(f"{source}: model_config must be a JSON object")
        if selftest is not None and len(selftest.logits) != len(labels):
            raise MetadataError(f"{source}: self-test has {len(selftest.logits)} logits for {len(labels)} labels")
        return cls(fcfg, labels, mcfg, props.get(PREFIX + "version", ""),
                   props.get(PREFIX + "quantization", "none"), selftest, schema)
