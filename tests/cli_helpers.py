"""Running the ``ser-edge`` CLI in-process from tests (shared by the CLI test modules)."""

from __future__ import annotations


def run_cli(capsys, *args):
    """-> (exit code, stdout, stderr) of ``ser-edge ARGS``."""
    from ser_edge.cli.main import main

    try:
        main(list(map(str, args)))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
