"""Device commands: ``predict``, ``listen``, ``bench``, ``selftest``.

Only typer and the standard library at module level: the runtime (numpy, onnxruntime) loads
inside each command, and nothing here ever imports torch, librosa or onnx.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ser_edge.cli.conventions import BackendChoice, BackendOpt, JsonOpt, ModelOpt, Smoothing, ThreadsOpt

#: ``bench MODEL`` / ``selftest MODEL``: the positional model of older releases, kept as a hidden,
#: deprecated alias of ``--model``.
LegacyModelArg = Annotated[Optional[Path], typer.Argument(metavar="MODEL", hidden=True, show_default=False)]
#: ``bench --repeats`` bound: timed runs per measurement (a median of 10000 is as good as any more).
MAX_REPEATS = 10000


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
    app.command("listen")(listen)
    app.command("bench")(bench)
    app.command("selftest")(selftest)


def _model_path(model: Optional[Path], backend: BackendChoice, legacy: Optional[Path] = None) -> str:
    """``--model``, else the shipped model for ``--backend`` (the ``.npz`` where onnxruntime is
    missing). A positional ``legacy`` model still works, with a deprecation warning."""
    from ser_edge.runtime.recognizer import default_backend, default_model_path

    if legacy is not None:
        if model is not None:
            raise typer.BadParameter("give the model once, as --model PATH", param_hint="--model")
        typer.echo("warning: the positional MODEL is deprecated; use --model/-m PATH", err=True)
        model = legacy
    if model is not None:
        return str(model)
    path = default_model_path(backend.value)
    if backend is BackendChoice.auto and default_backend() == "numpy" and path.endswith(".npz"):
        typer.echo(f"note: onnxruntime is not installed; running the shipped numpy model {Path(path).name}", err=True)
    return path


def _load(model: Optional[Path], backend: BackendChoice, threads: int, legacy: Optional[Path] = None):
    from ser_edge.runtime.recognizer import MAX_THREADS, Recognizer

    if not 1 <= threads <= MAX_THREADS:
        raise typer.BadParameter(f"must be in 1..{MAX_THREADS}, got {threads}", param_hint="--threads")
    return Recognizer.load(_model_path(model, backend, legacy), backend=backend.value, threads=threads)


def predict(
    files: Annotated[List[Path], typer.Argument(metavar="WAV...", help="WAV files (any rate, PCM or float).")],
    model: ModelOpt = None,
    backend: BackendOpt = BackendChoice.auto,
    threads: ThreadsOpt = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file (JSON Lines).")] = False,
    adapt: Annotated[Optional[List[Path]], typer.Option(
        "--adapt", metavar="WAV", help="Speaker adaptation (models trained with speaker_norm): the files of ONE "
        "speaker, unlabelled; their feature statistics replace the training population's. Repeatable.")]
    = None,
) -> None:
    """Classify WAV files. A bad file is reported on stderr and skipped; exit 1 if any failed."""
    from ser_edge.runtime.errors import SerEdgeError

    rec = _load(model, backend, threads)
    if adapt:
        rec.adapt([str(p) for p in adapt])
    failed = 0
    for path in files:
        try:
            pred = rec.predict(path)
        except (SerEdgeError, MemoryError) as e:  # one file's failure, never the batch's
            failed += 1
            msg = str(e) if isinstance(e, SerEdgeError) else f"{path}: out of memory"
            typer.echo(f"error: {msg}", err=True)
            if as_json:
                typer.echo(json.dumps({"file": str(path), "error": msg}))
            continue
        if as_json:
            typer.echo(json.dumps({"file": str(path), **pred.to_dict()}))
        else:
            typer.echo(f"{path}\t{pred.label}\t{pred.confidence:.3f}\t{pred.timing['total_ms']:.1f} ms")
    if failed:
        raise typer.Exit(1)


class StreamMode(str, Enum):
    """``listen --mode``: see :data:`ser_edge.runtime.stream.MODES`."""

    auto = "auto"
    stateful = "stateful"
    incremental = "incremental"
    window = "window"


#: ``listen`` numeric flags: ``name: (low, high)``, both inclusive; every value must also be finite.
LISTEN_RANGES = {"--window": (0.1, 60.0), "--hop": (0.01, 60.0), "--alpha": (1e-6, 1.0), "--chunk": (0.001, 10.0),
                 "--seconds": (0.001, 7 * 86400.0), "--vad-level": (-120.0, 0.0), "--vad-dynamic": (0.0, 120.0),
                 "--history": (1, 1000)}


def listen(
    model: ModelOpt = None,
    wav: Annotated[Optional[Path], typer.Option("--wav", help="Stream this WAV file (read from disk in chunks).")]
    = None,
    mic: Annotated[bool, typer.Option("--mic", help="Stream the default microphone (needs ser-edge[mic]).")] = False,
    window: Annotated[float, typer.Option("--window", help="Window length (s), 0.1..60.")] = 2.0,
    hop: Annotated[float, typer.Option("--hop", help="One prediction every HOP seconds (<= window).")] = 0.5,
    smoothing: Annotated[Smoothing, typer.Option("--smoothing", help="How successive windows are combined.")]
    = Smoothing.ema,
    alpha: Annotated[float, typer.Option("--alpha", help="EMA weight of the newest window, (0, 1].")] = 0.5,
    history: Annotated[int, typer.Option("--history", help="Windows averaged by --smoothing mean, 1..1000.")] = 4,
    chunk: Annotated[float, typer.Option("--chunk", help="Source chunk size (s), 0.001..10.")] = 0.1,
    realtime: Annotated[bool, typer.Option("--realtime", help="Pace a --wav file like live audio.")] = False,
    seconds: Annotated[Optional[float], typer.Option("--seconds", help="Stop the microphone after this long.")]
    = None,
    mode: Annotated[StreamMode, typer.Option("--mode", help="auto = the cheapest the model allows: stateful "
                                             "(unidirectional LSTM), else incremental, else window.")]
    = StreamMode.auto,
    vad: Annotated[bool, typer.Option("--vad/--no-vad", help="Report windows without speech as 'no speech'.")]
    = True,
    vad_level: Annotated[float, typer.Option("--vad-level", help="Speech gate: loudest blocks must reach "
                                             "this (dBFS).")] = -70.0,
    vad_dynamic: Annotated[float, typer.Option("--vad-dynamic", help="Speech gate: loud minus quiet blocks "
                                               "must reach this (dB).")] = 18.0,
    backend: BackendOpt = BackendChoice.auto,
    threads: ThreadsOpt = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per hop (JSON Lines).")] = False,
) -> None:
    """Streaming recognition: one smoothed prediction per hop from a WAV file or the microphone.
    The mode used (and why) is printed on stderr."""
    _check_listen_ranges({"--window": window, "--hop": hop, "--alpha": alpha, "--chunk": chunk, "--seconds": seconds,
                          "--vad-level": vad_level, "--vad-dynamic": vad_dynamic, "--history": history})
    if (wav is None) == (not mic):
        raise typer.BadParameter("give exactly one of --wav FILE or --mic")
    from ser_edge.runtime.audio import check_waveform
    from ser_edge.runtime.recognizer import MIN_DURATION_S
    from ser_edge.runtime.sources import mic_chunks, wav_chunks
    from ser_edge.runtime.vad import SpeechGate

    gate = SpeechGate(min_level_db=vad_level, min_dynamic_db=vad_dynamic) if vad else None
    rec = _load(model, backend, threads)
    try:
        stream = rec.stream(window_s=window, hop_s=hop, smoothing=smoothing.value, alpha=alpha, history=history,
                            mode=mode.value, gate=gate)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(f"listen: {stream.mode} mode ({stream.mode_reason})", err=True)
    if wav is not None:
        source = wav_chunks(str(wav), rec.sample_rate, chunk, realtime)
    else:
        max_chunks = None if seconds is None else max(1, int(round(seconds / chunk)))
        source = mic_chunks(rec.sample_rate, chunk, max_chunks=max_chunks)
    try:
        for block in source:
            for pred in stream.push(block):
                _print_hop(pred, as_json)
    except KeyboardInterrupt:  # the normal way to stop a live stream
        pass
    if wav is not None and stream.total < MIN_DURATION_S * rec.sample_rate:
        check_waveform(stream.recent_audio(), rec.sample_rate, str(wav))  # predict's "too short" error
    for pred in stream.flush():
        _print_hop(pred, as_json)


def _check_listen_ranges(values: dict) -> None:
    """Every numeric ``listen`` flag within :data:`LISTEN_RANGES` and finite (NaN passes click's
    own range checks), else a one-line usage error naming the flag."""
    import math

    for name, value in values.items():
        lo, hi = LISTEN_RANGES[name]
        if value is not None and not (math.isfinite(value) and lo <= value <= hi):
            raise typer.BadParameter(f"must be a number in [{lo:g}, {hi:g}], got {value}", param_hint=name)


def _print_hop(pred, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(pred.to_dict()))
    elif pred.silent:
        typer.echo(f"{pred.start_s:7.2f}-{pred.end_s:7.2f} s  (no speech)")
    else:
        typer.echo(f"{pred.start_s:7.2f}-{pred.end_s:7.2f} s  {pred.label:<10} {pred.confidence:.2f}  "
                   f"({pred.timing['total_ms']:.1f} ms)")


def bench(
    legacy_model: LegacyModelArg = None,
    model: ModelOpt = None,
    wav: Annotated[Optional[Path], typer.Option("--wav", help="Benchmark on this WAV (default: 3 s of synthetic "
                                                "speech).")] = None,
    threads: Annotated[str, typer.Option("--threads", help="Comma-separated thread counts to sweep, e.g. 1,2,4.")]
    = "1",
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per measurement (median reported).")] = 20,
    backend: BackendOpt = BackendChoice.auto,
    cold_start: Annotated[bool, typer.Option("--cold-start/--no-cold-start",
                                             help="Also time a fresh process from spawn to first prediction.")]
    = True,
    as_json: JsonOpt = False,
    json_out: Annotated[Optional[Path], typer.Option("--json-out", help="Also write the full JSON report to this "
                                                     "file (atomically).")] = None,
) -> None:
    """MFCC time, model time per thread count, real-time factor, peak RSS and cold start."""
    from ser_edge.runtime.bench import bench as run_bench
    from ser_edge.runtime.bench import format_report
    from ser_edge.runtime.io import atomic_write_json, check_output_file
    from ser_edge.runtime.recognizer import MAX_THREADS

    try:
        counts = [int(t) for t in threads.split(",") if t.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected integers like 1,2,4, got {threads!r}", param_hint="--threads") from None
    if not counts or min(counts) < 1 or max(counts) > MAX_THREADS:
        raise typer.BadParameter(f"thread counts must be in 1..{MAX_THREADS}, got {threads!r}", param_hint="--threads")
    if not 1 <= repeats <= MAX_REPEATS:
        raise typer.BadParameter(f"must be in 1..{MAX_REPEATS}, got {repeats}", param_hint="--repeats")
    if json_out is not None:
        check_output_file(json_out)  # a directory there is an error now, not after the benchmark
    report = run_bench(_model_path(model, backend, legacy_model), wav=str(wav) if wav else None, threads=counts,
                       backend=backend.value, repeats=repeats, with_cold_start=cold_start)
    typer.echo(json.dumps(report) if as_json else format_report(report))
    if json_out is not None:
        atomic_write_json(json_out, report)
        typer.echo(f"wrote {json_out}", err=as_json)


def selftest(
    legacy_model: LegacyModelArg = None,
    model: ModelOpt = None,
    backend: BackendOpt = BackendChoice.auto,
    threads: ThreadsOpt = 1,
    as_json: JsonOpt = False,
) -> None:
    """Check this device reproduces the logits the model was exported with; exit 1 on failure."""
    from ser_edge.runtime.selftest import run_selftest

    rec = _load(model, backend, threads, legacy_model)
    res = run_selftest(rec)
    if as_json:
        typer.echo(json.dumps(res.to_dict()))
    else:
        typer.echo(f"{'PASS' if res.passed else 'FAIL'}  {rec.backend.path} [{res.backend}, {res.quantization}]: "
                   f"max |logit diff| {res.max_abs_diff:.2e} (tolerance {res.atol:.2e}); "
                   f"label {res.label}, expected {res.expected_label}")
    if not res.passed:
        raise typer.Exit(1)
