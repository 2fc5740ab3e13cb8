"""Pieces every exporter shares: the reference model, the example input, the metadata (with its
self-test vector) and a deterministic speech-like test signal."""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping, Optional, Tuple

import numpy as np
import torch

import ser_edge
from ser_edge.checkpoint import Checkpoint
from ser_edge.runtime.features import FeatureConfig, extract
from ser_edge.runtime.metadata import MetadataError, ModelMetadata, SelfTest
from ser_edge.runtime.signals import speechlike  # noqa: F401  (re-exported for the export modules)

from .errors import ExportError

#: Length of the self-test waveform embedded in every model (seconds).
SELFTEST_SECONDS = 0.5
#: Tolerance the runtime applies to fp32 self-test logits (features are recomputed on the
#: device, so this covers float differences in the MFCC as well as in the model).
FP32_SELFTEST_ATOL = 1e-3


def torch_logits(model: torch.nn.Module, features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Run a torch module (eager or TorchScript). ``(B, T, F) float32, (B,) int64 -> (B, C) float32``."""
    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
                    torch.from_numpy(np.ascontiguousarray(lengths, dtype=np.int64)))
    return out.detach().cpu().numpy().astype(np.float32)


def example_inputs(n_features: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Tracing input: batch 2 with unequal lengths and time > 1, so no size-1 dimension or equal
    length can be specialised into the graph. ``((2, 16, F) float32, (2,) int64)``."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 16, n_features, generator=g), torch.tensor([16, 9], dtype=torch.int64)


def selftest_input(selftest: SelfTest, fcfg: FeatureConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Model input for the embedded self-test waveform. ``((1, T, F) float32, (1,) int64)``."""
    feats = extract(selftest.waveform, fcfg)
    return feats[None], np.array([feats.shape[0]], dtype=np.int64)


def make_selftest(model: torch.nn.Module, fcfg: FeatureConfig, waveform: np.ndarray,
                  atol: float = FP32_SELFTEST_ATOL) -> SelfTest:
    """The self-test vector: ``waveform`` round-tripped through int16 (what ships) and the PyTorch
    fp32 logits for exactly that."""
    shipped = SelfTest.quantise_waveform(np.asarray(waveform, dtype=np.float32))
    probe = SelfTest(fcfg.sample_rate, shipped, np.zeros(0, np.float32), atol)
    logits = torch_logits(model, *selftest_input(probe, fcfg))[0]
    return SelfTest(fcfg.sample_rate, shipped, logits, atol)


def int8_selftest(selftest: SelfTest, int8_logits: np.ndarray) -> SelfTest:
    """Self-test for an int8 model: the same fp32 reference logits, with a tolerance wide enough
    for quantisation error - 3x the error measured at export plus the fp32 margin, since int8
    kernels on another CPU round differently."""
    err = float(np.max(np.abs(np.asarray(int8_logits, np.float32) - selftest.logits)))
    return SelfTest(selftest.sample_rate, selftest.waveform, selftest.logits,
                    FP32_SELFTEST_ATOL + 3.0 * err)


def build_metadata(ckpt: Checkpoint, selftest: Optional[SelfTest], quantization: str = "none") -> ModelMetadata:
    """Everything the runtime needs to know, from the checkpoint."""
    meta = ModelMetadata(feature_config=ckpt.feature_config, labels=list(ckpt.labels),
                         model_config=ckpt.model_config.to_dict(), version=ser_edge.__version__,
                         quantization=quantization, selftest=selftest)
    # Validate with the runtime's own parser now, so an unusable model is never written.
    verify_props(meta.to_props(), meta, "checkpoint")
    return meta


def verify_props(props: Mapping[str, str], expected: ModelMetadata, source: str) -> ModelMetadata:
    """Parse ``props`` as the runtime will and check they carry exactly ``expected``."""
    try:
        parsed = ModelMetadata.from_props(dict(props), source)
    except MetadataError as e:
        raise ExportError(f"{source}: embedded metadata is unusable: {e}") from None
    if parsed.to_props() != expected.to_props():
        differ = sorted(k for k, v in expected.to_props().items() if parsed.to_props().get(k) != v)
        raise ExportError(f"{source}: embedded metadata does not round-trip (keys {differ})")
    return parsed


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (latency is measured single-threaded)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
