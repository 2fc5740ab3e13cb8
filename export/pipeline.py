"""``export_all``: checkpoint -> checked, parity-gated artifacts in ``out_dir``.

Every artifact is built in a private staging directory inside ``out_dir``, checked there
(structure, metadata round trip), evaluated against PyTorch fp32 on a held-out set, and only
then moved to its final name with an atomic rename. A failed check raises :class:`ExportError`
and a failed gate :class:`GateFailure`; either way no model reaches its final path and the
staging directory is removed. ``parity.json`` (written atomically) records the comparison, also
when a gate failed.

Files: ``model.onnx``, ``model.int8.onnx``, ``model.ts``, ``model.int8.ts``, ``model.npz``,
(``model.tflite``, ``model.int8.tflite`` + ``.json`` sidecars), ``parity.json``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import ser_edge
from ser_edge.checkpoint import Checkpoint, load_checkpoint
from ser_edge.runtime.io import atomic_write_json
from ser_edge.runtime.metadata import ModelMetadata

from . import numpy_export, onnx_export, torchscript_export
from .common import (SELFTEST_SECONDS, build_metadata, int8_selftest, make_selftest, selftest_input,
                     speechlike, torch_logits, torch_threads, verify_props)
from .errors import ExportError, GateFailure
from .parity import (GATES, ArtifactResult, EvalSet, ReferenceResult, Runner, compare,
                     eval_set_from_utterances, format_table, label_scores, latency_ms, run_clips,
                     synthetic_eval_set)

FORMATS = ("onnx", "torchscript", "numpy", "tflite")
DEFAULT_FORMATS = ("onnx", "torchscript", "numpy")
PARITY_FILE = "parity.json"
NUMPY_BACKEND_MODULE = "ser_edge.runtime.backends.numpy_lstm"
TFLITE_INSTALL_HINT = "TFLite export needs TensorFlow: install ser-edge[tflite-export]"


@dataclass
class ExportReport:
    """What ``export_all`` did; ``to_dict()`` is the content of ``parity.json``."""

    checkpoint: str
    out_dir: str
    formats: List[str]
    quantize: bool
    eval_set: Dict[str, object]
    reference: ReferenceResult
    artifacts: List[ArtifactResult]
    gates_enforced: bool
    published: List[str] = field(default_factory=list)

    @property
    def failures(self) -> List[str]:
        return [f"{a.name}: {msg}" for a in self.artifacts for msg in a.failures]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def parity_path(self) -> str:
        return os.path.join(self.out_dir, PARITY_FILE)

    def table(self) -> str:
        return format_table(self.reference, self.artifacts)

    def to_dict(self) -> Dict[str, object]:
        return {
            "ser_edge_version": ser_edge.__version__,
            "checkpoint": self.checkpoint,
            "formats": list(self.formats),
            "quantize": self.quantize,
            "eval_set": self.eval_set,
            "reference": vars(self.reference).copy(),
            "artifacts": [a.to_dict() for a in self.artifacts],
            "gates": dict(GATES),
            "gates_enforced": self.gates_enforced,
            "passed": self.passed,
            "failures": self.failures,
            "published": list(self.published),
        }


def parse_formats(formats: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """``"onnx,numpy"`` or ``["onnx", "numpy"]`` -> validated, de-duplicated, in order."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out: List[str] = []
    for item in (str(x).strip().lower() for x in items):
        if item and item not in out:
            out.append(item)
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise ExportError(f"unknown export format(s) {bad or formats!r}; valid formats: {', '.join(FORMATS)}")
    return tuple(out)


def export_all(checkpoint_path: str, out_dir: str, formats: Union[str, Sequence[str]] = DEFAULT_FORMATS,
               quantize: bool = False, eval_data: Union[EvalSet, Sequence, None] = None,
               gate: bool = True) -> ExportReport:
    """Export ``checkpoint_path`` to every format in ``formats`` (fp32, plus dynamic int8 where
    the format has one when ``quantize``), gate each artifact on parity with PyTorch fp32 over
    ``eval_data`` (an :class:`EvalSet`, a list of ``ser_edge.data.Utterance``, or ``None`` for
    the synthetic set) and publish them into ``out_dir``.

    Raises :class:`CheckpointError` for a bad checkpoint, :class:`ExportError` when an artifact
    fails a check, :class:`GateFailure` when a gate fails and ``gate`` is true (nothing is
    published then). With ``gate=False`` failing artifacts are published with a warning.
    """
    formats = parse_formats(formats)
    tflite = _tflite_module() if "tflite" in formats else None  # fail before any work
    ckpt = load_checkpoint(os.fspath(checkpoint_path))
    if not ckpt.feature_config.is_normalised:
        raise ExportError(f"{checkpoint_path}: the feature config has no normalisation statistics; "
                          "the runtime could not reproduce the model's input")
    model = ckpt.build_model()
    ev = _eval_set(eval_data, ckpt)
    waveform = ev.waveform if ev.waveform is not None else speechlike(SELFTEST_SECONDS, ckpt.feature_config.sample_rate)
    selftest = make_selftest(model, ckpt.feature_config, waveform)
    meta = build_metadata(ckpt, selftest)

    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".ser-edge-export-", dir=out_dir)
    try:
        built: List[Tuple[ArtifactResult, Optional[Runner]]] = []
        if "onnx" in formats:
            built += _onnx(model, ckpt, meta, staging, quantize)
        if "torchscript" in formats:
            built += _torchscript(model, ckpt, meta, staging, quantize)
        if "numpy" in formats:
            built += _numpy(ckpt, meta, staging)
        if tflite is not None:
            built += _tflite(tflite, ckpt, meta, staging, quantize)
        report = _evaluate(model, ev, built, ckpt, checkpoint_path, out_dir, formats, quantize, gate)
        if report.failures and gate:
            for a in report.artifacts:
                a.path = None  # the staged file is deleted below; nothing exists to point at
            atomic_write_json(report.parity_path, report.to_dict())
            raise GateFailure(f"parity gate failed ({'; '.join(report.failures)}); nothing was published, "
                              f"see {report.parity_path} (--no-gate publishes anyway)", report)
        if report.failures:
            warnings.warn("parity gates NOT enforced: publishing artifacts that failed them: "
                          + "; ".join(report.failures), UserWarning, stacklevel=2)
        _publish(report, staging, out_dir)
        atomic_write_json(report.parity_path, report.to_dict())
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# Building (each returns (result skeleton, runner) pairs for files now in `staging`)
# ------------------------------------------------------------------------------------------

def _onnx(model, ckpt: Checkpoint, meta: ModelMetadata, staging: str, quantize: bool):
    n_lstm = onnx_export.lstm_count(ckpt.model_config.arch, ckpt.model_config.num_layers)
    path = os.path.join(staging, "model.onnx")
    onnx_export.export_onnx(model, meta, path, n_lstm)
    verify_props(onnx_export.read_metadata_props(path), meta, path)
    out = [(_skeleton("model.onnx", "onnx", "fp32", path), onnx_export.OnnxRunner(path))]
    if quantize:
        qpath = os.path.join(staging, "model.int8.onnx")
        onnx_export.quantize_onnx(path, qpath, n_lstm)
        probe = onnx_export.OnnxRunner(qpath)(*selftest_input(meta.selftest, ckpt.feature_config))[0]
        qmeta = build_metadata(ckpt, int8_selftest(meta.selftest, probe), "dynamic-int8")
        onnx_export.write_metadata(qpath, qmeta)
        verify_props(onnx_export.read_metadata_props(qpath), qmeta, qpath)
        out.append((_skeleton("model.int8.onnx", "onnx", "int8", qpath), onnx_export.OnnxRunner(qpath)))
    return out


def _torchscript(model, ckpt: Checkpoint, meta: ModelMetadata, staging: str, quantize: bool):
    variants = [("model.ts", "fp32", model, meta)]
    if quantize:
        qmodel = torchscript_export.quantize_int8(model)
        probe = torch_logits(qmodel, *selftest_input(meta.selftest, ckpt.feature_config))[0]
        variants.append(("model.int8.ts", "int8", qmodel,
                         build_metadata(ckpt, int8_selftest(meta.selftest, probe), "dynamic-int8")))
    out = []
    for name, precision, module, m in variants:
        path = os.path.join(staging, name)
        torchscript_export.export_torchscript(module, m, path)
        verify_props(torchscript_export.read_metadata_props(path), m, path)
        loaded = torchscript_export.load_torchscript(path)
        out.append((_skeleton(name, "torchscript", precision, path),
                    lambda f, l, loaded=loaded: torch_logits(loaded, f, l)))
    return out


def _numpy(ckpt: Checkpoint, meta: ModelMetadata, staging: str):
    path = os.path.join(staging, "model.npz")
    numpy_export.export_numpy(ckpt.state_dict, ckpt.model_config, meta, path)
    verify_props(numpy_export.read_metadata_props(path), meta, path)
    result = _skeleton("model.npz", "numpy", "fp32", path)
    runner, note = _numpy_runner(path, meta)
    result.note = note
    return [(result, runner)]


def _numpy_runner(path: str, meta: ModelMetadata) -> Tuple[Optional[Runner], str]:
    """The runtime's numpy backend on ``path``, or ``(None, why not)`` while it does not exist."""
    try:
        module = importlib.import_module(NUMPY_BACKEND_MODULE)
    except ModuleNotFoundError as e:
        if e.name != NUMPY_BACKEND_MODULE:
            raise
        return None, f"not evaluated: the runtime's numpy backend ({NUMPY_BACKEND_MODULE}) is not installed"
    from ser_edge.runtime.backends.base import Backend

    classes = [c for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, Backend) and getattr(c, "name", "") == "numpy"]
    if not classes:
        return None, f"not evaluated: {NUMPY_BACKEND_MODULE} defines no backend named 'numpy'"
    backend = classes[0](path, threads=1)
    if list(backend.metadata.labels) != list(meta.labels):
        raise ExportError(f"{path}: the numpy backend reads labels {backend.metadata.labels}, expected {meta.labels}")
    return backend.run, ""


def _tflite_module():
    """``ser_edge.export.tflite_export``; a clean :class:`ExportError` when TensorFlow is missing."""
    if importlib.util.find_spec("tensorflow") is None:
        raise ExportError(TFLITE_INSTALL_HINT)
    try:
        from . import tflite_export
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in ("tensorflow", "tf_keras", "ai_edge_litert", "tflite_runtime"):
            raise ExportError(f"{TFLITE_INSTALL_HINT} ({e.name} is missing)") from None
        raise
    return tflite_export


def _tflite(tflite, ckpt: Checkpoint, meta: ModelMetadata, staging: str, quantize: bool):
    """TFLite files from the TFLite helper, with our metadata; the model files are checked to
    carry it (embedded and in the ``.json`` sidecar) and evaluated with its interpreter."""
    out = []
    for p in tflite.export_tflite(ckpt, staging, quantize, metadata_props=meta.to_props()):
        path = os.fspath(p)
        if os.path.dirname(os.path.abspath(path)) != os.path.abspath(staging):
            raise ExportError(f"TFLite exporter wrote {path} outside the staging directory {staging}")
        name = os.path.basename(path)
        precision = "int8" if ".int8." in name else "fp32"
        result = _skeleton(name, "tflite", precision, path)
        if not name.endswith(".tflite"):
            result.role = "metadata sidecar"
            out.append((result, None))
            continue
        props = tflite.read_metadata_props(path)
        if precision == "fp32":
            verify_props(props, meta, path)
        elif verify_props(props, ModelMetadata.from_props(props, path), path).quantization != "dynamic-int8":
            raise ExportError(f"{path}: int8 model is not tagged dynamic-int8")
        from ser_edge.runtime.backends.litert import sidecar_path

        sidecar = sidecar_path(path)
        if not os.path.isfile(sidecar) or _read_json(sidecar) != props:
            raise ExportError(f"{path}: the metadata sidecar {os.path.basename(sidecar)} is missing or differs")
        out.append((result, lambda f, l, path=path: tflite.run_tflite(path, f, l)))
    return out


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _skeleton(name: str, fmt: str, precision: str, path: str) -> ArtifactResult:
    return ArtifactResult(name=name, format=fmt, precision=precision, path=path, size_bytes=os.path.getsize(path))


# ------------------------------------------------------------------------------------------
# Evaluation and publishing
# ------------------------------------------------------------------------------------------

def _eval_set(eval_data, ckpt: Checkpoint) -> EvalSet:
    if eval_data is None:
        ev = synthetic_eval_set(ckpt.feature_config, ckpt.model_config.n_classes)
    elif isinstance(eval_data, EvalSet):
        ev = eval_data
    else:
        ev = eval_set_from_utterances(list(eval_data), ckpt.feature_config, ckpt.labels, "given utterances")
    n_mfcc = ckpt.feature_config.n_mfcc
    if any(f.shape[1] != n_mfcc for f in ev.features):
        raise ExportError(f"held-out set {ev.source!r}: features must have {n_mfcc} coefficients")
    if ev.labels.min() < 0 or ev.labels.max() >= len(ckpt.labels):
        raise ExportError(f"held-out set {ev.source!r}: labels outside 0..{len(ckpt.labels) - 1}")
    return ev


def _evaluate(model, ev: EvalSet, built, ckpt: Checkpoint, checkpoint_path: str, out_dir: str,
              formats: Sequence[str], quantize: bool, gate: bool) -> ExportReport:
    """Run the reference and every artifact on ``ev`` single-threaded (as on the device)."""
    clip = ev.features[ev.latency_clip()]
    with torch_threads(1):
        ref_runner = lambda f, l: torch_logits(model, f, l)  # noqa: E731
        ref_logits = run_clips(ref_runner, ev)
        ref = ReferenceResult(*label_scores(ev.labels, ref_logits),
                              latency_ms(ref_runner, clip), len(ev.features))
        results = []
        for result, runner in built:
            if runner is not None:
                compare(result, run_clips(runner, ev), ref_logits, ev.labels, ref, latency_ms(runner, clip))
            results.append(result)
    return ExportReport(checkpoint=os.path.abspath(checkpoint_path), out_dir=os.path.abspath(out_dir),
                        formats=list(formats), quantize=quantize,
                        eval_set={**ev.describe(), "latency_clip_frames": int(clip.shape[0])},
                        reference=ref, artifacts=results, gates_enforced=gate)


def _publish(report: ExportReport, staging: str, out_dir: str) -> None:
    """Atomic rename of every checked artifact to its final name."""
    for a in report.artifacts:
        final = os.path.join(out_dir, a.name)
        os.replace(os.path.join(staging, a.name), final)
        a.path = os.path.abspath(final)
        report.published.append(a.path)


__all__ = ["FORMATS", "DEFAULT_FORMATS", "PARITY_FILE", "ExportReport", "export_all", "parse_formats"]
