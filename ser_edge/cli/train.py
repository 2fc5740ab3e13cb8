"""Training commands: ``train`` and ``evaluate``.

Only typer and the standard library at module level; torch and the training code load inside
the commands. ``ser-edge train`` also runs under ``torchrun --nproc_per_node N`` (one process
per rank; rank 0 prints and writes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple

import typer

DATA_HELP = "Corpus: ravdess, crema-d, tess, emodb, iemocap, folder or manifest."


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)


def _csv(value: Optional[str]) -> Optional[Tuple[str, ...]]:
    """``"a,b"`` -> ``("a", "b")``; empty or missing -> ``None``."""
    if not value:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip()) or None


def _ratios(value: str) -> Tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise typer.BadParameter("expected three numbers like 0.8,0.1,0.1", param_hint="--ratios") from None
    if len(parts) != 3:
        raise typer.BadParameter("expected three numbers like 0.8,0.1,0.1", param_hint="--ratios")
    return parts  # type: ignore[return-value]


def train(
    data: str = typer.Option(..., "--data", "-d", help=DATA_HELP),
    root: Path = typer.Option(..., "--root", "-r", help="Corpus directory (or manifest CSV)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: best.pt, last.pt, history.json, metrics.json."),
    arch: str = typer.Option("lstm", help="lstm or attn_bilstm."),
    hidden: int = typer.Option(128, help="LSTM hidden size."),
    layers: int = typer.Option(2, help="LSTM layers."),
    dropout: float = typer.Option(0.2, help="Dropout."),
    epochs: int = typer.Option(30, help="Maximum epochs."),
    batch_size: int = typer.Option(32, help="Batch size (per process under torchrun)."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    weight_decay: float = typer.Option(1e-4, help="Adam weight decay."),
    patience: int = typer.Option(5, help="Stop after this many epochs without validation improvement."),
    monitor: str = typer.Option("uar", help="Validation metric for the best checkpoint: uar or loss."),
    label_smoothing: float = typer.Option(0.1, help="Label smoothing."),
    class_weights: bool = typer.Option(True, "--class-weights/--no-class-weights",
                                       help="Weigh the loss by inverse training-class frequency."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Noise + speed perturbation."),
    augment_prob: float = typer.Option(0.5, help="Fraction of training clips augmented per epoch."),
    max_frames: int = typer.Option(400, help="Random crop of longer training clips (frames of 10 ms; 0 = none)."),
    labels: Optional[str] = typer.Option(None, help="Comma-separated label subset, e.g. neutral,happy,sad,angry."),
    seed: int = typer.Option(0, help="Seed for split, initialisation, batches and augmentation."),
    ratios: str = typer.Option("0.8,0.1,0.1", help="Speaker shares train,val,test."),
    test_speakers: Optional[str] = typer.Option(None, help="Comma-separated test speakers (fixed)."),
    val_speakers: Optional[str] = typer.Option(None, help="Comma-separated validation speakers (fixed)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Feature cache directory (reused across runs)."),
    workers: int = typer.Option(1, help="Feature-extraction processes."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: int = typer.Option(0, help="torch CPU threads per process (0 = torch default)."),
    checkpoint_every: int = typer.Option(0, help="Also save last.pt every N steps (0 = at epoch ends)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from last.pt."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train a classifier on a speaker-disjoint split; keep the best validation checkpoint and
    report its test-set metrics."""
    import torch

    from ser_edge.train import TrainConfig
    from ser_edge.train import train as run_training

    if threads > 0:
        torch.set_num_threads(threads)
    cfg = TrainConfig(
        data=data, root=os.fspath(root), out_dir=os.fspath(out), labels=_csv(labels), arch=arch, hidden=hidden,
        layers=layers, dropout=dropout, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        patience=patience, monitor=monitor, label_smoothing=label_smoothing, class_weights=class_weights,
        augment=augment, augment_prob=augment_prob, max_frames=max_frames or None, seed=seed,
        ratios=_ratios(ratios), test_speakers=_csv(test_speakers), val_speakers=_csv(val_speakers),
        cache_dir=os.fspath(cache_dir) if cache_dir else None, workers=workers, device=device,
        checkpoint_every=checkpoint_every, resume=resume, progress=not quiet)
    result = run_training(cfg)
    if os.environ.get("RANK", "0") != "0":
        return
    val = result.best_val
    typer.echo(f"best epoch {result.best_epoch}/{result.epochs_run}"
               + (" (stopped early)" if result.stopped_early else "")
               + f": val UAR {val['val_uar']:.3f} acc {val['val_acc']:.3f}")
    if result.test is not None:
        typer.echo(f"test: UAR {result.test.uar:.3f} acc {result.test.accuracy:.3f} "
                   f"weighted F1 {result.test.weighted_f1:.3f} (n={result.test.n})")
    typer.echo(f"checkpoint: {result.best_path}")


def evaluate(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by ser-edge train (best.pt)."),
    data: str = typer.Option(..., "--data", "-d", help=DATA_HELP),
    root: Path = typer.Option(..., "--root", "-r", help="Corpus directory (or manifest CSV)."),
    split: str = typer.Option("test", help="test, val, train (the speakers recorded in the checkpoint) or all."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write metrics.json + metrics_confusion.png here."),
    cache_dir: Optional[Path] = typer.Option(None, help="Feature cache directory."),
    workers: int = typer.Option(1, help="Feature-extraction processes."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    per_class: bool = typer.Option(True, "--report/--no-report", help="Print the per-class report."),
) -> None:
    """Accuracy, UAR, weighted F1, per-class scores and a confusion matrix for a checkpoint."""
    from ser_edge.evaluate import evaluate as run_evaluation

    m = run_evaluation(os.fspath(checkpoint), data=data, root=os.fspath(root), split=split,
                       out_dir=os.fspath(out) if out else None, cache_dir=os.fspath(cache_dir) if cache_dir else None,
                       workers=workers, device=device)
    skipped = m.extra.get("skipped_unknown_label", 0) + len(m.extra.get("skipped_unreadable", []))
    typer.echo(f"{split}: n={m.n} accuracy {m.accuracy:.3f} UAR {m.uar:.3f} weighted F1 {m.weighted_f1:.3f}"
               + (f" ({skipped} skipped)" if skipped else ""))
    if per_class:
        typer.echo(m.report())
    if out:
        typer.echo(f"wrote {os.path.join(os.fspath(out), 'metrics.json')}")


__all__: List[str] = ["register", "train", "evaluate"]
