"""Device commands: ``predict``, ``listen``, ``bench``, ``selftest``.

Only typer and the standard library at module level: the runtime (numpy, onnxruntime) loads
inside each command, and nothing here ever imports torch, librosa or onnx.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

BACKEND_HELP = "auto (by file extension), onnxruntime (.onnx), litert (.tflite) or numpy (.npz)"
MODEL_HELP = "Exported model (.onnx / .tflite / .npz). Default: the model shipped with ser-edge."


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
    app.command("listen")(listen)
    app.command("bench")(bench)
    app.command("selftest")(selftest)


def _load(model: Optional[str], backend: str, threads: int):
    from ser_edge.runtime.recognizer import Recognizer, default_model_path

    if threads < 1:
        raise typer.BadParameter("must be >= 1", param_hint="--threads")
    return Recognizer.load(model or default_model_path(), backend=backend, threads=threads)


def predict(
    files: List[Path] = typer.Argument(..., metavar="WAV...", help="WAV files (any rate, PCM or float)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    threads: int = typer.Option(1, help="Inference threads."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file (JSON Lines)."),
) -> None:
    """Classify WAV files. A bad file is reported on stderr and skipped; exit 1 if any failed."""
    from ser_edge.runtime.errors import SerEdgeError

    rec = _load(model, backend, threads)
    failed = 0
    for path in files:
        try:
            pred = rec.predict(path)
        except SerEdgeError as e:
            failed += 1
            typer.echo(f"error: {e}", err=True)
            if as_json:
                typer.echo(json.dumps({"file": str(path), "error": str(e)}))
            continue
        if as_json:
            typer.echo(json.dumps({"file": str(path), **pred.to_dict()}))
        else:
            typer.echo(f"{path}\t{pred.label}\t{pred.confidence:.3f}\t{pred.timing['total_ms']:.1f} ms")
    if failed:
        raise typer.Exit(1)


def listen(
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    wav: Optional[Path] = typer.Option(None, help="Stream this WAV file."),
    mic: bool = typer.Option(False, "--mic", help="Stream the default microphone (needs ser-edge[mic])."),
    window: float = typer.Option(2.0, help="Window length (s)."),
    hop: float = typer.Option(0.5, help="One prediction every HOP seconds."),
    smoothing: str = typer.Option("ema", help="ema, mean or none."),
    alpha: float = typer.Option(0.5, help="EMA weight of the newest window."),
    history: int = typer.Option(4, help="Windows averaged by --smoothing mean."),
    chunk: float = typer.Option(0.1, help="Source chunk size (s)."),
    realtime: bool = typer.Option(False, "--realtime", help="Pace a --wav file like live audio."),
    seconds: Optional[float] = typer.Option(None, help="Stop the microphone after this long."),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    threads: int = typer.Option(1, help="Inference threads."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per hop."),
) -> None:
    """Streaming recognition: one smoothed prediction per hop from a WAV file or the microphone."""
    from ser_edge.runtime.sources import mic_chunks, wav_chunks

    if (wav is None) == (not mic):
        raise typer.BadParameter("give exactly one of --wav FILE or --mic")
    rec = _load(model, backend, threads)
    try:
        stream = rec.stream(window_s=window, hop_s=hop, smoothing=smoothing, alpha=alpha, history=history)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
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
    for pred in stream.flush():
        _print_hop(pred, as_json)


def _print_hop(pred, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(pred.to_dict()))
    elif pred.silent:
        typer.echo(f"{pred.start_s:7.2f}-{pred.end_s:7.2f} s  (silence)")
    else:
        typer.echo(f"{pred.start_s:7.2f}-{pred.end_s:7.2f} s  {pred.label:<10} {pred.confidence:.2f}  "
                   f"({pred.timing['total_ms']:.1f} ms)")


def bench(
    model: Optional[str] = typer.Argument(None, help="Exported model (.onnx / .tflite / .npz); default: the shipped model."),
    wav: Optional[Path] = typer.Option(None, help="Benchmark on this WAV (default: 3 s of synthetic speech)."),
    threads: str = typer.Option("1", help="Comma-separated thread counts to sweep, e.g. 1,2,4."),
    repeats: int = typer.Option(20, help="Timed runs per measurement (median reported)."),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    cold_start: bool = typer.Option(True, "--cold-start/--no-cold-start",
                                    help="Also time a fresh process from spawn to first prediction."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report here (atomically)."),
) -> None:
    """MFCC time, model time per thread count, real-time factor, peak RSS and cold start."""
    from ser_edge.runtime.bench import bench as run_bench
    from ser_edge.runtime.bench import format_report
    from ser_edge.runtime.io import atomic_write_json

    try:
        counts = [int(t) for t in threads.split(",") if t.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected integers like 1,2,4, got {threads!r}", param_hint="--threads") from None
    if not counts or min(counts) < 1 or repeats < 1:
        raise typer.BadParameter("thread counts and --repeats must be >= 1")
    from ser_edge.runtime.recognizer import default_model_path

    report = run_bench(model or default_model_path(), wav=str(wav) if wav else None, threads=counts, backend=backend,
                       repeats=repeats, with_cold_start=cold_start)
    typer.echo(format_report(report))
    if json_out is not None:
        atomic_write_json(json_out, report)
        typer.echo(f"wrote {json_out}")


def selftest(
    model: Optional[str] = typer.Argument(None, help="Exported model (.onnx / .tflite / .npz); default: the shipped model."),
    backend: str = typer.Option("auto", help=BACKEND_HELP),
    threads: int = typer.Option(1, help="Inference threads."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check this device reproduces the logits the model was exported with; exit 1 on failure."""
    from ser_edge.runtime.selftest import run_selftest

    rec = _load(model, backend, threads)
    res = run_selftest(rec)
    if as_json:
        typer.echo(json.dumps(res.to_dict()))
    else:
        typer.echo(f"{'PASS' if res.passed else 'FAIL'}  {model or 'shipped model'} [{res.backend}, {res.quantization}]: "
                   f"max |logit diff| {res.max_abs_diff:.2e} (tolerance {res.atol:.2e}); "
                   f"label {res.label}, expected {res.expected_label}")
    if not res.passed:
        raise typer.Exit(1)
