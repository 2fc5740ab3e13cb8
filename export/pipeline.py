"""``export_all``: checkpoint -> checked, parity-gated artifacts in ``out_dir``.

Every artifact is built in a private staging directory inside ``out_dir``, checked there
(structure, metadata round trip), evaluated against PyTorch fp32 on a held-out set, and only
then moved to its final name with an atomic rename. A failed check raises :class:`ExportError`
and a failed gate :class:`GateFailure`; either way no model reaches its final path and the
staging directory is removed.

Publishing is all or nothing: ``parity.json`` is written into the staging directory with the
models, a ``COMMITTED`` marker is written there, the old ``parity.json`` is removed, the models
are renamed into place and ``parity.json`` last. A run killed in between is completed by the
next ``export_all`` into the same directory (the marker says the staged set passed); a staging
directory without the marker, left by a killed run, is deleted then, as are stale temp files of
atomic writes (``ser_edge.runtime.io``). A failed gate writes its report to
``parity.failed.json`` and leaves an earlier good export's ``parity.json`` (and models) alone.

Files: ``model.onnx``, ``model.int8.onnx``, ``model.ts``, ``model.int8.ts``, ``model.npz``,
(``model.tflite``, ``model.int8.tflite`` + ``.json`` sidecars), ``parity.json``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import ser_edge
from ser_edge.checkpoint import Checkpoint, load_checkpoint
from ser_edge.runtime.backends.numpy_lstm import NumpyLSTMBackend
from ser_edge.runtime.io import atomic_write_json, check_output_dir, remove_stale_temps, stale_temps, temp_prefix
from ser_edge.runtime.metadata import ModelMetadata, SelfTest

from . import numpy_export, onnx_export, torchscript_export
from .common import (
    SELFTEST_SECONDS,
    build_metadata,
    int8_selftest,
    make_selftest,
    selftest_input,
    speechlike,
    torch_logits,
    torch_threads,
    verify_props,
)
from .errors import ExportError, GateFailure
from .notices import Notice, collect_warnings
from .parity import (
    GATES,
    ArtifactResult,
    EvalSet,
    ReferenceResult,
    Runner,
    compare,
    eval_set_from_utterances,
    format_table,
    label_scores,
    latency_ms,
    run_clips,
    synthetic_eval_set,
)

FORMATS = ("onnx", "torchscript", "numpy", "tflite")
DEFAULT_FORMATS = ("onnx", "torchscript", "numpy")
PARITY_FILE = "parity.json"
#: The report of a run whose gate failed: never over the parity.json of the models beside it.
FAILED_PARITY_FILE = "parity.failed.json"
#: In a staging directory: the staged set passed and is being published (lists the file names).
COMMIT_MARKER = "COMMITTED"
STAGING_NAME = "export"
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
    warnings: List[Notice] = field(default_factory=list)  # third-party warnings while exporting

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
            "warnings": [n.to_dict() for n in self.warnings],
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
               gate: bool = True, progress: Optional[Callable[[str], None]] = None) -> ExportReport:
    """Export ``checkpoint_path`` to every format in ``formats`` (fp32, plus dynamic int8 where
    the format has one when ``quantize``), gate each artifact on parity with PyTorch fp32 over
    ``eval_data`` (an :class:`EvalSet`, a list of ``ser_edge.data.Utterance``, or ``None`` for
    the synthetic set) and publish them into ``out_dir``.

    Raises :class:`CheckpointError` for a bad checkpoint, :class:`ExportError` when an artifact
    fails a check, :class:`GateFailure` when a gate fails and ``gate`` is true (nothing is
    published then). With ``gate=False`` failing artifacts are published with a warning.
    ``progress`` is called with a short description as each stage starts. Third-party warnings
    raised while building and evaluating are collected into ``report.warnings`` (and
    ``parity.json``), not printed.
    """
    formats = parse_formats(formats)
    step = progress or (lambda _: None)
    check_output_dir(out_dir)  # an existing file there: a clear error before any work
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
    recover_staging(out_dir)
    staging = tempfile.mkdtemp(prefix=temp_prefix(STAGING_NAME), dir=out_dir)
    try:
        built: List[Tuple[ArtifactResult, Optional[Runner]]] = []
        with collect_warnings() as notices:  # third-party noise -> parity.json, not the terminal
            for fmt in (f for f in FORMATS if f in formats):  # a fixed order, whatever the flag's
                step(f"building {fmt}")
                if fmt == "onnx":
                    built += _onnx(model, ckpt, meta, staging, quantize)
                elif fmt == "torchscript":
                    built += _torchscript(model, ckpt, meta, staging, quantize)
                elif fmt == "numpy":
                    built += _numpy(ckpt, meta, staging)
                elif fmt == "tflite" and tflite is not None:
                    built += _tflite(tflite, ckpt, meta, staging, quantize)
            step(f"checking parity on {len(ev.features)} held-out clips")
            report = _evaluate(model, ev, built, ckpt, checkpoint_path, out_dir, formats, quantize, gate)
        report.warnings = notices
        if report.failures and gate:
            for a in report.artifacts:
                a.path = None  # the staged file is deleted below; nothing exists to point at
            failed_path = os.path.join(out_dir, FAILED_PARITY_FILE)
            atomic_write_json(failed_path, report.to_dict())
            raise GateFailure(f"parity gate failed ({'; '.join(report.failures)}); nothing was published, "
                              f"see {failed_path} (--no-gate publishes anyway)", report)
        if report.failures:
            warnings.warn("parity gates NOT enforced: publishing artifacts that failed them: "
                          + "; ".join(report.failures), UserWarning, stacklevel=2)
        _publish(report, staging, out_dir)
        return report
    finally:
        if not os.path.exists(os.path.join(staging, COMMIT_MARKER)):  # committed: the next run finishes it
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
        st = _selftest(meta)
        probe = onnx_export.OnnxRunner(qpath)(*selftest_input(st, ckpt.feature_config))[0]
        qmeta = build_metadata(ckpt, int8_selftest(st, probe), "dynamic-int8")
        onnx_export.write_metadata(qpath, qmeta)
        verify_props(onnx_export.read_metadata_props(qpath), qmeta, qpath)
        out.append((_skeleton("model.int8.onnx", "onnx", "int8", qpath), onnx_export.OnnxRunner(qpath)))
    if ckpt.model_config.arch == "lstm":  # unidirectional: also a stateful graph for streaming
        out += _onnx_stream(model, ckpt, meta, staging, quantize)
    return out


def _onnx_stream(model, ckpt: Checkpoint, meta: ModelMetadata, staging: str, quantize: bool):
    """``model.stream.onnx`` (+ ``model.int8.stream.onnx``): the LSTM state as graph inputs and
    outputs (``ser_edge.runtime.backends.onnxruntime_backend``), gated like the plain graphs
    (from zero state they classify like them)."""
    layers, hidden = ckpt.model_config.num_layers, ckpt.model_config.hidden_size
    path = os.path.join(staging, "model.stream.onnx")
    onnx_export.export_stream_onnx(model, meta, path)
    verify_props(onnx_export.read_metadata_props(path), meta, path)
    out = [(_skeleton("model.stream.onnx", "onnx", "fp32", path), onnx_export.OnnxRunner(path))]
    if quantize:
        qpath = os.path.join(staging, "model.int8.stream.onnx")
        st = _selftest(meta)
        onnx_export.quantize_stream_onnx(path, qpath, meta, layers, hidden)
        probe = onnx_export.OnnxRunner(qpath)(*selftest_input(st, ckpt.feature_config))[0]
        qmeta = build_metadata(ckpt, int8_selftest(st, probe), "dynamic-int8")
        onnx_export.quantize_stream_onnx(path, qpath, qmeta, layers, hidden)
        verify_props(onnx_export.read_metadata_props(qpath), qmeta, qpath)
        out.append((_skeleton("model.int8.stream.onnx", "onnx", "int8", qpath), onnx_export.OnnxRunner(qpath)))
    return out


def _torchscript(model, ckpt: Checkpoint, meta: ModelMetadata, staging: str, quantize: bool):
    variants = [("model.ts", "fp32", model, meta)]
    if quantize:
        qmodel = torchscript_export.quantize_int8(model)
        st = _selftest(meta)
        probe = torch_logits(qmodel, *selftest_input(st, ckpt.feature_config))[0]
        variants.append(("model.int8.ts", "int8", qmodel,
                         build_metadata(ckpt, int8_selftest(st, probe), "dynamic-int8")))
    out = []
    for name, precision, module, m in variants:
        path = os.path.join(staging, name)
        torchscript_export.export_torchscript(module, m, path)
        verify_props(torchscript_export.read_metadata_props(path), m, path)
        loaded = torchscript_export.load_torchscript(path)
        out.append((_skeleton(name, "torchscript", precision, path),
                    lambda f, n, loaded=loaded: torch_logits(loaded, f, n)))
    return out


def _numpy(ckpt: Checkpoint, meta: ModelMetadata, staging: str):
    path = os.path.join(staging, "model.npz")
    numpy_export.export_numpy(ckpt.state_dict, ckpt.model_config, meta, path)
    verify_props(numpy_export.read_metadata_props(path), meta, path)
    backend = NumpyLSTMBackend(path, threads=1)  # the runtime's own reader: what the device runs
    if list(backend.metadata.labels) != list(meta.labels):
        raise ExportError(f"{path}: the numpy backend reads labels {backend.metadata.labels}, expected {meta.labels}")
    return [(_skeleton("model.npz", "numpy", "fp32", path), backend.run)]


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
    out: List[Tuple[ArtifactResult, Optional[Runner]]] = []
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
        from ser_edge.runtime.backends.litert import DIGEST_KEY, sidecar_path

        sidecar = sidecar_path(path)
        if not os.path.isfile(sidecar) or _read_json(sidecar) != {**props, DIGEST_KEY: _sha256(path)}:
            raise ExportError(f"{path}: the metadata sidecar {os.path.basename(sidecar)} is missing or differs "
                              "(props and sha256)")
        out.append((result, functools.partial(tflite.run_tflite, path)))
    return out


def _selftest(meta: ModelMetadata) -> SelfTest:
    """The fp32 self-test vector the int8 variants are re-referenced from (always built above)."""
    if meta.selftest is None:
        raise ExportError("internal: metadata without a self-test vector")
    return meta.selftest


def _sha256(path: str) -> str:
    from ser_edge.runtime.backends.litert import file_digest

    with open(path, "rb") as f:
        return file_digest(f.read())


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
    n_features = ckpt.feature_config.n_features
    if any(f.shape[1] != n_features for f in ev.features):
        raise ExportError(f"held-out set {ev.source!r}: features must have {n_features} columns")
    if ev.labels.min() < 0 or ev.labels.max() >= len(ckpt.labels):
        raise ExportError(f"held-out set {ev.source!r}: labels outside 0..{len(ckpt.labels) - 1}")
    return ev


def _evaluate(model, ev: EvalSet, built, ckpt: Checkpoint, checkpoint_path: str, out_dir: str,
              formats: Sequence[str], quantize: bool, gate: bool) -> ExportReport:
    """Run the reference and every artifact on ``ev`` single-threaded (as on the device)."""
    clip = ev.features[ev.latency_clip()]
    with torch_threads(1):
        ref_runner = lambda f, n: torch_logits(model, f, n)  # noqa: E731
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
    """Publish the staged artifacts and their ``parity.json`` as one set (module docstring)."""
    for a in report.artifacts:
        a.path = os.path.abspath(os.path.join(out_dir, a.name))
        report.published.append(a.path)
    names = [a.name for a in report.artifacts]
    atomic_write_json(os.path.join(staging, PARITY_FILE), report.to_dict())
    atomic_write_json(os.path.join(staging, COMMIT_MARKER), {"files": names})
    _finish_publish(staging, out_dir, names)


def _finish_publish(staging: str, out_dir: str, names: Sequence[str]) -> None:
    """Move a committed staging directory's files into ``out_dir``: the old report goes first,
    the new one last, so no parity.json ever sits beside models it does not describe."""
    parity = os.path.join(out_dir, PARITY_FILE)
    if os.path.exists(parity) and os.path.exists(os.path.join(staging, PARITY_FILE)):
        os.unlink(parity)
    for name in names:
        if os.path.exists(os.path.join(staging, name)):  # absent: moved before an interruption
            os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    if os.path.exists(os.path.join(staging, PARITY_FILE)):
        os.replace(os.path.join(staging, PARITY_FILE), parity)
    failed = os.path.join(out_dir, FAILED_PARITY_FILE)
    if os.path.exists(failed):  # superseded by this good export
        os.unlink(failed)
    shutil.rmtree(staging, ignore_errors=True)


def recover_staging(out_dir: str) -> List[str]:
    """Clean up after killed exports into ``out_dir``: finish publishing a staging directory
    that was committed, delete one that was not, and delete stale atomic-write temp files.
    Returns the paths it finished or removed."""
    finished = []
    for path in stale_temps(out_dir):
        marker = os.path.join(path, COMMIT_MARKER)
        if os.path.basename(path).startswith(f".{STAGING_NAME}.") and os.path.isfile(marker):
            try:
                names = [str(n) for n in _read_json(marker)["files"] if os.path.basename(str(n)) == str(n)]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged marker: the set cannot be trusted; removed below
            _finish_publish(path, out_dir, names)
            finished.append(path)
    return finished + remove_stale_temps(out_dir)


__all__ = ["FORMATS", "DEFAULT_FORMATS", "PARITY_FILE", "FAILED_PARITY_FILE", "ExportReport", "export_all",
           "parse_formats", "recover_staging"]
