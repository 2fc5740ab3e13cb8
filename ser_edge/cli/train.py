"""Training commands: ``train``, ``cv`` and ``evaluate``.

``train`` and ``cv`` take the same options, generated from :class:`ser_edge.config.TrainConfig`
(``ser_edge.cli.config_options``): a recipe (``--config NAME|FILE``) plus flags that override it.
Only typer and the standard library at module level; torch and the training code load inside
the commands. ``ser-edge train`` also runs under ``torchrun --nproc_per_node N`` (one process
per rank; rank 0 prints and writes).
"""

from __future__ import annotations

import inspect
import os
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer
from typing_extensions import Annotated

from ser_edge.cli.config_options import with_config_options
from ser_edge.cli.conventions import DataOpt, RootOpt


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("cv")(cv)
    app.command("evaluate")(evaluate)


def _param(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


QUIET = _param("quiet", Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")], False)
PRINT_CONFIG = _param("print_config", Annotated[bool, typer.Option(
    "--print-config", help="Print the resolved configuration as a recipe and exit.")], False)


def _resolve(given: Dict[str, Any], recipe: Optional[str], quiet: bool) -> Any:
    from ser_edge.config import build_config

    if quiet:
        given["progress"] = False
    return build_config(recipe, **given)


@with_config_options([QUIET, PRINT_CONFIG])
def train(given: Dict[str, Any], recipe: Optional[str], quiet: bool, print_config: bool) -> None:
    """Train a classifier on a speaker-disjoint split; keep the best validation checkpoint (or the
    last epoch with --select last) and report its test-set metrics."""
    from ser_edge.config import describe

    cfg = _resolve(given, recipe, quiet)
    if print_config:
        typer.echo(describe(cfg), nl=False)
        return
    from ser_edge.train import train as run_training

    result = run_training(cfg)
    if os.environ.get("RANK", "0") != "0":
        return
    val = result.best_val
    chosen = f"best epoch {result.best_epoch}/{result.epochs_run}"
    chosen += " (stopped early)" if result.stopped_early else ""
    typer.echo(chosen + (f": val UAR {val['val_uar']:.3f} acc {val['val_acc']:.3f}" if val else ""))
    if result.test is not None:
        typer.echo(f"test: UAR {result.test.uar:.3f} acc {result.test.accuracy:.3f} "
                   f"weighted F1 {result.test.weighted_f1:.3f} (n={result.test.n})")
    typer.echo(f"checkpoint: {result.best_path}")


FOLDS = _param("folds", Annotated[str, typer.Option(
    "--folds", help="k (actor-disjoint k-fold, speakers dealt round-robin in sorted order), 'loso' "
                    "(leave one speaker out), or explicit test-speaker lists 'A,B;C,D;...'.",
    rich_help_panel="Cross-validation")], "5")
REPEATS = _param("repeats", Annotated[int, typer.Option(
    "--repeats", min=1, max=100, help="Repeat every fold with seeds seed, seed+1, ...",
    rich_help_panel="Cross-validation")], 1)
N_VAL = _param("n_val", Annotated[int, typer.Option(
    "--val-speakers-per-fold", min=0, max=100, help="Validation speakers taken from each fold's training "
    "speakers (never its test speakers); 0 = none (use --select last).", rich_help_panel="Cross-validation")], 2)
CV_JSON = _param("json_out", Annotated[Optional[Path], typer.Option(
    "--json-out", help="Also write the summary (cv.json) here.", rich_help_panel="Cross-validation")], None)
INT8 = _param("int8", Annotated[bool, typer.Option(
    "--int8/--no-int8", help="Also score every fold's model after ONNX int8 quantisation.",
    rich_help_panel="Cross-validation")], False)


@with_config_options([QUIET, PRINT_CONFIG, FOLDS, REPEATS, N_VAL, CV_JSON, INT8],
                     exclude=("test_speakers", "val_speakers", "ratios", "resume"))
def cv(given: Dict[str, Any], recipe: Optional[str], quiet: bool, print_config: bool, folds: str, repeats: int,
       n_val: int, json_out: Optional[Path], int8: bool) -> None:
    """Speaker-disjoint cross-validation of a recipe: per-fold and mean +- std UAR, accuracy and
    weighted F1, pooled confusion matrix. Finished folds are kept in --out: a killed run resumes.
    With --speaker-norm, folds also report the speaker-adapted score (each test speaker's own
    unlabelled clips give their normalisation), separately from the unadapted one."""
    from ser_edge.config import describe

    cfg = _resolve(given, recipe, quiet)
    if print_config:
        typer.echo(describe(cfg), nl=False)
        return
    from ser_edge.cv import CVOptions, run_cv

    summary = run_cv(cfg, CVOptions(folds=folds, repeats=repeats, val_per_fold=n_val, int8=int8, recipe=recipe),
                     json_out=os.fspath(json_out) if json_out else None)
    typer.echo(summary.table())


class Split(str, Enum):
    """``evaluate --split``: the speakers recorded in the checkpoint, or the whole corpus."""

    test = "test"
    val = "val"
    train = "train"
    all = "all"


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint written by ser-edge train (best.pt).")],
    data: DataOpt,
    root: RootOpt,
    split: Annotated[Split, typer.Option(help="The checkpoint's test/val/train speakers, or all.")] = Split.test,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write metrics.json + metrics_confusion.png here.")]
    = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Feature cache directory.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Feature-extraction processes.")] = 1,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    per_class: Annotated[bool, typer.Option("--report/--no-report", help="Print the per-class report.")] = True,
) -> None:
    """Accuracy, UAR, weighted F1, per-class scores and a confusion matrix for a checkpoint."""
    from ser_edge.evaluate import evaluate as run_evaluation

    m = run_evaluation(os.fspath(checkpoint), data=data.value, root=os.fspath(root), split=split.value,
                       out_dir=os.fspath(out) if out else None, cache_dir=os.fspath(cache_dir) if cache_dir else None,
                       workers=workers, device=device)
    skipped = m.extra.get("skipped_unknown_label", 0) + len(m.extra.get("skipped_unreadable", []))
    typer.echo(f"{split.value}: n={m.n} accuracy {m.accuracy:.3f} UAR {m.uar:.3f} weighted F1 {m.weighted_f1:.3f}"
               + (f" ({skipped} skipped)" if skipped else ""))
    if per_class:
        typer.echo(m.report())
    if out:
        typer.echo(f"wrote {os.path.join(os.fspath(out), 'metrics.json')}")


__all__: List[str] = ["register", "train", "cv", "evaluate"]
