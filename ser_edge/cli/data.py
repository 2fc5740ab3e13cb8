"""Data commands (``ser-edge data ...``): ``synth`` writes the built-in synthetic corpus, ``info``
indexes a corpus and prints what it found.

Only typer and the standard library at module level; the data layer loads inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Datasets: generate the built-in synthetic corpus, inspect a corpus.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DATA_HELP = "Corpus: ravdess, crema-d, tess, emodb, iemocap, folder or manifest."


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Directory to write WAVs, manifest.csv and README.txt into."),
    speakers: int = typer.Option(8, "--speakers", help="Number of synthetic speakers."),
    per_class: int = typer.Option(12, "--per-class", help="Clips per speaker and label."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same corpus."),
    sample_rate: int = typer.Option(16000, "--sample-rate", help="Sample rate of the WAVs (Hz)."),
) -> None:
    """Write a SYNTHETIC emotional 'speech' corpus (not real speech) for demos and tests."""
    from ser_edge.data.labels import CANONICAL_LABELS
    from ser_edge.data.synth import synth_corpus

    manifest = synth_corpus(out_dir, n_speakers=speakers, per_class=per_class, seed=seed, sample_rate=sample_rate)
    n = speakers * per_class * len(CANONICAL_LABELS)
    typer.echo(f"wrote {n} synthetic clips ({speakers} speakers x {len(CANONICAL_LABELS)} labels x {per_class}) "
               f"to {out_dir}")
    typer.echo(f"manifest: {manifest}")
    typer.echo(f"use it as: --data manifest --root {out_dir}")


@app.command()
def info(
    name: str = typer.Argument(..., metavar="NAME", help=DATA_HELP),
    root: Path = typer.Argument(..., metavar="ROOT", help="Corpus directory (or manifest CSV)."),
    show_skipped: int = typer.Option(5, "--show-skipped", help="How many skipped files to list."),
) -> None:
    """Index a corpus and print its size, speakers, per-label counts and skipped files."""
    from ser_edge.data import label_counts, load_corpus

    index = load_corpus(name, root)
    speakers = index.speakers()
    typer.echo(f"corpus: {index.name} ({index.root})")
    typer.echo(f"utterances: {len(index)}")
    typer.echo(f"speakers: {len(speakers)} ({', '.join(speakers[:12])}{', ...' if len(speakers) > 12 else ''})")
    typer.echo("labels:")
    for label, count in label_counts(index).items():
        typer.echo(f"  {label:<12} {count}")
    typer.echo(f"skipped: {len(index.skipped)}")
    for path, reason in index.skipped[:max(0, show_skipped)]:
        typer.echo(f"  {path}: {reason}")
    if len(index.skipped) > show_skipped > 0:
        typer.echo(f"  ... and {len(index.skipped) - show_skipped} more")
