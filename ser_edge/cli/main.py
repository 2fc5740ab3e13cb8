"""``ser-edge`` entry point. Thin: each command group lives in its own module and imports its
heavy dependencies (torch, librosa, onnx) inside the command, so ``ser-edge predict`` on a Pi
never loads them.

CLI conventions (every command follows them; shared types live in :mod:`ser_edge.cli.conventions`):

* Parameters are declared in typer's ``Annotated`` style: ``name: Annotated[T, typer.Option(...)] = default``,
  with the flag spelled out (``"--flag"``, short ``"-f"`` only for the common ones below).
* Fixed choices are ``str`` Enums (``Corpus``, ``BackendChoice``, ``ExportFormat``, ``Smoothing``...),
  so ``--help`` lists them and a typo is a usage error; the command passes ``choice.value`` on.
* What a command works *on* is positional (``predict WAV...``, ``export CHECKPOINT``,
  ``evaluate CHECKPOINT``, ``data synth OUT_DIR``); everything else is an option.
* An exported model is ``--model/-m PATH`` (device commands default to the shipped model);
  a corpus is ``--data/-d NAME --root/-r PATH``; an output directory is ``--out/-o DIR``.
* ``--json`` is a switch: JSON on stdout instead of text (JSON Lines when there is one object
  per file or hop). A report written to a file is ``--json-out PATH`` (atomically).
* ``--threads N`` (>= 1) for inference threads; ``--quiet/-q`` silences progress and notes,
  ``--verbose/-v`` shows full warning text; results and errors always print.
* Errors: a :class:`SerEdgeError` (bad file, model, data) or ``typer.BadParameter`` (bad flag
  combination) -> one ``error:`` line on stderr and exit 2, never a traceback. Progress and
  notes go to stderr, results to stdout.
* Help text is plain text (``rich_markup_mode=None``): brackets such as ``ser-edge[mic]`` print as written.
"""

from __future__ import annotations

import sys

import typer

from ser_edge.runtime.errors import SerEdgeError

app = typer.Typer(
    name="ser-edge",
    help="Speech emotion recognition from training to a Raspberry Pi.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _register() -> None:
    # Each module adds its commands; importing them is cheap (typer only at module level).
    from ser_edge.cli import data, export, runtime, train

    app.add_typer(data.app, name="data")
    train.register(app)
    export.register(app)
    runtime.register(app)


_register()


def main(argv=None) -> None:
    """Run the CLI; user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app(args=argv, standalone_mode=True)
    except SerEdgeError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
