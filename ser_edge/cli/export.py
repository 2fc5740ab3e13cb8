"""``ser-edge export``: checkpoint -> parity-gated ONNX / TorchScript / numpy / TFLite models.

Only typer and the standard library at module level; torch and onnx load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ser_edge.cli.conventions import Corpus, ExportFormat, QuietOpt, VerboseOpt, progress

FORMATS_HELP = f"Comma-separated formats, any of: {', '.join(f.value for f in ExportFormat)}."


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint written by `ser-edge train`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (created if missing).")],
    quantize: Annotated[bool, typer.Option("--quantize", help="Also write dynamic int8 models (ONNX, TorchScript, "
                                           "TFLite).")] = False,
    formats: Annotated[str, typer.Option("--formats", help=FORMATS_HELP)] = "onnx,torchscript,numpy",
    data: Annotated[Optional[Corpus], typer.Option("--data", "-d", help="Corpus for the held-out set; with --root. "
                                                   "Default: a synthetic set.")] = None,
    root: Annotated[Optional[Path], typer.Option("--root", "-r", help="Corpus directory for --data.")] = None,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="Publish even if a parity gate fails (loudly).")] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Export a checkpoint, check every artifact against PyTorch fp32 and write parity.json.
    Exits non-zero if an artifact fails a check or a parity gate."""
    from ser_edge.checkpoint import load_checkpoint
    from ser_edge.export import GateFailure, eval_set_from_corpus, export_all, parse_formats
    from ser_edge.runtime.io import check_output_dir

    fmts = parse_formats(formats)
    check_output_dir(out)  # before any work: an existing file there is a one-line error
    if (data is None) != (root is None):
        raise typer.BadParameter("--data and --root go together", param_hint="--data/--root")
    if no_gate:
        typer.echo("warning: --no-gate: parity gates are NOT enforced; models are published even if "
                   "they disagree with PyTorch", err=True)
    eval_data = None
    try:
        with progress(quiet, "export") as step:
            if data is not None:
                step(f"extracting the held-out {data.value} features")
                ckpt = load_checkpoint(str(checkpoint))
                eval_data = eval_set_from_corpus(data.value, str(root), ckpt.feature_config, ckpt.labels, ckpt.extra)
            report = export_all(str(checkpoint), str(out), fmts, quantize=quantize, eval_data=eval_data,
                                gate=not no_gate, progress=step)
    except GateFailure as e:
        if e.report is not None:
            typer.echo(e.report.table())
            _print_warnings(e.report.warnings, quiet, verbose)
        raise
    _print_warnings(report.warnings, quiet, verbose)
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


def _print_warnings(notices, quiet: bool, verbose: bool) -> None:
    """One summary line on stderr for the third-party warnings of an export (all in parity.json;
    none with ``--quiet``); their full text with ``--verbose``."""
    from ser_edge.export.notices import summary_line

    if not notices or (quiet and not verbose):
        return
    typer.echo(f"note: {summary_line(notices)}", err=True)
    if verbose:
        for n in notices:
            typer.echo(f"  [{n.category} x{n.count}] {n.source}: {n.message}", err=True)
