"""Third-party warnings during an export go to parity.json and one summary line, not the terminal."""

from __future__ import annotations

import json
import logging
import warnings

import pytest

from ser_edge.export.notices import Notice, collect_warnings, summary_line


def test_collect_warnings_records_instead_of_printing(capfd):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with collect_warnings() as notices:
        for _ in range(3):
            warnings.warn("a caveat the export already handles", UserWarning, stacklevel=1)
        warnings.warn("`torch.jit.script` is deprecated. Please switch to torch.export.", DeprecationWarning,
                      stacklevel=1)
        logging.warning("Please consider to run pre-processing before quantization.")
        logging.getLogger("some.library").warning("child logger")
        logging.getLogger("some.library").info("below WARNING: ignored")
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # nothing reached the terminal
    assert root.handlers == handlers and root.level == level  # logging is left as it was
    got = {(n.category, n.message): n.count for n in notices}
    assert got == {("UserWarning", "a caveat the export already handles"): 3,
                   ("DeprecationWarning", "`torch.jit.script` is deprecated. Please switch to torch.export."): 1,
                   ("log.WARNING", "Please consider to run pre-processing before quantization."): 1,
                   ("log.WARNING", "child logger"): 1}
    assert {n.source for n in notices if n.category == "log.WARNING"} == {"root", "some.library"}


def test_summary_line_names_deprecations():
    notices = [Notice("UserWarning", "torch.onnx", "batch size caveat", 2),
               Notice("DeprecationWarning", "torch.jit", "`torch.jit.save` is deprecated. Please switch."),
               Notice("UserWarning", "torch.ao", "torch.ao.quantization is deprecated and will be removed in 2.10.")]
    line = summary_line(notices)
    assert "\n" not in line and line.startswith("4 third-party warnings") and "parity.json" in line
    assert "2 deprecations: `torch.jit.save` is deprecated | torch.ao.quantization is deprecated" in line
    assert summary_line([]) == ""


def test_export_collects_warnings_into_parity_json(capsys, random_checkpoint, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from ser_edge.cli.main import main

    out = tmp_path / "out"
    try:
        main(["export", str(random_checkpoint("lstm")), "--out", str(out), "--formats", "onnx", "--quantize",
              "--no-gate", "--verbose", "--quiet"])
    except SystemExit as e:
        assert e.code in (0, None)
    stdout, stderr = capsys.readouterr()
    report = json.loads((out / "parity.json").read_text())
    kept = report["warnings"]
    assert kept and all({"category", "source", "message", "count"} <= set(n) for n in kept)
    # torch 2.13 deprecates the legacy ONNX exporter ser-edge keeps on purpose: recorded, and named
    assert any(n["category"] == "DeprecationWarning" and "ONNX export" in n["message"] for n in kept)
    notes = [line for line in stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "third-party warning" in notes[0] and "deprecation" in notes[0]
    details = [line for line in stderr.splitlines() if line.startswith("  [")]  # --verbose: one per warning
    assert len(details) == len(kept)
    assert not any(line.startswith("export: ") for line in stderr.splitlines())  # --quiet: no progress
    assert "held-out set" in stdout


def test_progress_is_plain_lines_off_a_terminal_and_silent_when_quiet(capsys):
    from ser_edge.cli.conventions import progress

    with progress(False, "export") as step:
        step("building onnx")
        step("building onnx", completed=1, total=2)  # same stage: no second line
        step("checking parity")
    with progress(True, "export") as step:
        step("building numpy")
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == ["export: building onnx", "export: checking parity"]
