"""Choices and options shared by the commands, so that a flag means the same thing everywhere
(the conventions are listed in :mod:`ser_edge.cli.main`).

Only typer and the standard library: importing this must stay cheap (``ser-edge predict`` on a Pi).
The enum values mirror lists owned elsewhere (``ser_edge.data.CORPORA``,
``ser_edge.runtime.backends.BACKENDS``, ``ser_edge.export.FORMATS``); a test checks they agree.
"""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional, Set

import typer


class Corpus(str, Enum):
    """A corpus layout ``ser_edge.data.load_corpus`` reads."""

    ravdess = "ravdess"
    crema_d = "crema-d"
    tess = "tess"
    emodb = "emodb"
    iemocap = "iemocap"
    folder = "folder"
    manifest = "manifest"


class BackendChoice(str, Enum):
    """Inference engine. The model file decides it (``.onnx`` onnxruntime, ``.tflite`` litert,
    ``.npz`` numpy); without ``--model`` it picks which shipped model runs."""

    auto = "auto"
    onnxruntime = "onnxruntime"
    litert = "litert"
    numpy = "numpy"


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    numpy = "numpy"
    tflite = "tflite"


class Smoothing(str, Enum):
    ema = "ema"
    mean = "mean"
    none = "none"


MODEL_HELP = ("Exported model (.onnx / .tflite / .npz). Default: the shipped model (int8 ONNX; the "
              ".npz where onnxruntime is not installed, e.g. 32-bit Pi OS).")
BACKEND_HELP = ("Without --model: which shipped model to run (auto = onnxruntime if installed, else numpy). "
                "With --model the file type decides, and a different value is an error.")

ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help=MODEL_HELP)]
BackendOpt = Annotated[BackendChoice, typer.Option("--backend", help=BACKEND_HELP)]
ThreadsOpt = Annotated[int, typer.Option("--threads", help="Inference threads (>= 1).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of text.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors: no progress or notes.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Full text of warnings and notes.")]
DataOpt = Annotated[Corpus, typer.Option("--data", "-d", help="Corpus layout.")]
RootOpt = Annotated[Path, typer.Option("--root", "-r", help="Corpus directory (or manifest CSV).")]


@contextmanager
def progress(quiet: bool = False, label: str = "ser-edge") -> Iterator[Callable[..., None]]:
    """Progress on stderr for a long command: ``with progress(quiet) as step: step("building onnx")``,
    or ``step("extracting features", completed=i, total=n)`` for a bar. A rich spinner/bar on a
    terminal, one plain line per new stage otherwise (CI logs), nothing with ``--quiet``."""
    if quiet:
        yield lambda *a, **k: None
        return
    from rich.console import Console  # rich comes with typer; imported only when used
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        seen: Set[str] = set()

        def plain(description: str, completed: Optional[int] = None, total: Optional[int] = None) -> None:
            if description not in seen:
                seen.add(description)
                typer.echo(f"{label}: {description}", err=True)

        yield plain
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(description: str, completed: Optional[int] = None, total: Optional[int] = None) -> None:
            bar.update(task, description=description, completed=completed or 0, total=total)

        yield update
