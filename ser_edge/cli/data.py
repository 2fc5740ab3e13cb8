"""Data commands (``ser-edge data ...``): ``synth`` writes the built-in synthetic corpus, ``info``
indexes a corpus and prints what it found.

Only typer and the standard library at module level; the data layer loads inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ser_edge.cli.conventions import DataOpt, RootOpt

app = typer.Typer(
    help="Datasets: generate the built-in synthetic corpus, inspect a corpus.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write WAVs, manifest.csv and README.txt into.")],
    speakers: Annotated[int, typer.Option("--speakers", help="Number of synthetic speakers.")] = 8,
    per_class: Annotated[int, typer.Option("--per-class", help="Clips per speaker and label.")] = 12,
    seed: Annotated[int, typer.Option("--seed", help="Seed; the same seed gives the same corpus.")] = 0,
    sample_rate: Annotated[int, typer.Option("--sample-rate", help="Sample rate of the WAVs (Hz).")] = 16000,
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
    data: DataOpt,
    root: RootOpt,
    show_skipped: Annotated[int, typer.Option("--show-skipped", min=0, help="How many skipped files to list.")] = 5,
    check_audio: Annotated[bool, typer.Option("--check-audio/--no-check-audio",
                                              help="Read every file and skip what training would skip (unreadable, "
                                              "too short, silent: the runtime's checks).")] = True,
) -> None:
    """Index a corpus and print its size, speakers, per-label counts and skipped files."""
    from ser_edge.data import label_counts, load_corpus

    index = load_corpus(data.value, root)
    if check_audio:
        from ser_edge.data.store import check_corpus_audio

        index = check_corpus_audio(index)
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
