"""Run the parity vector a model carries (:class:`~ser_edge.runtime.metadata.SelfTest`) through
this device's numpy MFCC and backend, and compare with the PyTorch fp32 logits from export time."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from .metadata import MetadataError
from .recognizer import Recognizer


@dataclass(frozen=True)
class SelfTestResult:
    passed: bool  # max_abs_diff <= atol
    max_abs_diff: float  # max |logit - reference logit|
    atol: float  # tolerance stored in the model (wider for int8 models)
    top1_agrees: bool  # same argmax as the reference
    label: str  # predicted label
    expected_label: str  # the reference's label
    backend: str
    quantization: str

    def to_dict(self) -> dict:
        return asdict(self)


def run_selftest(rec: Recognizer) -> SelfTestResult:
    """Classify the embedded waveform and compare logits. Raises :class:`MetadataError` when the
    model carries no self-test vector."""
    path, st = rec.backend.path, rec.metadata.selftest
    if st is None:
        raise MetadataError(f"{path}: model carries no self-test vector (re-export it with ser-edge export)")
    if st.logits.shape != (len(rec.labels),):
        raise MetadataError(f"{path}: self-test has {st.logits.shape[0]} logits for {len(rec.labels)} labels")
    # Same path as predict(), minus the silence/length checks: the vector is whatever shipped.
    t0 = time.perf_counter()
    y = st.waveform if st.sample_rate == rec.sample_rate else rec.load_waveform(st.waveform, st.sample_rate)
    t1 = time.perf_counter()
    pred = rec.classify_features(rec.features(y), len(y) / rec.sample_rate, t0, t1)
    diff = float(np.max(np.abs(pred.logits - st.logits)))
    expected = rec.labels[int(np.argmax(st.logits))]
    return SelfTestResult(bool(diff <= st.atol), diff, float(st.atol), pred.label == expected, pred.label,
                          expected, rec.backend_name, rec.metadata.quantization)
