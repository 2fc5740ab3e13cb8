"""``ser-edge export``: checkpoint -> parity-gated ONNX / TorchScript / numpy / TFLite models.

Only typer and the standard library at module level; torch and onnx load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

FORMATS_HELP = "Comma-separated formats: onnx, torchscript, numpy, tflite."


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `ser-edge train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (created if missing)."),
    quantize: bool = typer.Option(False, "--quantize", help="Also write dynamic int8 models (ONNX, TorchScript, TFLite)."),
    formats: str = typer.Option("onnx,torchscript,numpy", "--formats", help=FORMATS_HELP),
    data: Optional[str] = typer.Option(None, "--data", help="Corpus for the held-out set (e.g. ravdess); with --root. "
                                       "Default: a synthetic set."),
    root: Optional[Path] = typer.Option(None, "--root", help="Corpus directory for --data."),
    no_gate: bool = typer.Option(False, "--no-gate", help="Publish even if a parity gate fails (loudly)."),
) -> None:
    """Export a checkpoint, check every artifact against PyTorch fp32 and write parity.json.
    Exits non-zero if an artifact fails a check or a parity gate."""
    from ser_edge.checkpoint import load_checkpoint
    from ser_edge.export import GateFailure, eval_set_from_corpus, export_all, parse_formats

    fmts = parse_formats(formats)
    if (data is None) != (root is None):
        raise typer.BadParameter("--data and --root go together", param_hint="--data/--root")
    if no_gate:
        typer.echo("warning: --no-gate: parity gates are NOT enforced; models are published even if "
                   "they disagree with PyTorch", err=True)
    eval_data = None
    if data is not None:
        ckpt = load_checkpoint(str(checkpoint))
        eval_data = eval_set_from_corpus(data, str(root), ckpt.feature_config, ckpt.labels, ckpt.extra)
    try:
        report = export_all(str(checkpoint), str(out), fmts, quantize=quantize, eval_data=eval_data, gate=not no_gate)
    except GateFailure as e:
        if e.report is not None:
            typer.echo(e.report.table())
        raise
    ev = report.eval_set
    typer.echo(f"held-out set: {ev['source']} ({ev['n_clips']} clips"
               f"{', synthetic labels' if ev['synthetic'] else ''})")
    for note in ev["notes"]:
        typer.echo(f"  note: {note}")
    typer.echo(report.table())
    for path in report.published:
        typer.echo(f"wrote {path}")
    typer.echo(f"wrote {report.parity_path}")
    if not report.passed:
        typer.echo("warning: published despite failed parity gates: " + "; ".join(report.failures), err=True)
