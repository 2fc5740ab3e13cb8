"""``ser-edge`` entry point. Thin: each command group lives in its own module and imports its
heavy dependencies (torch, librosa, onnx) inside the command, so ``ser-edge predict`` on a Pi
never loads them."""

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
