"""``ser-edge train`` under ``torchrun`` with two local CPU processes (gloo backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

from ser_edge.checkpoint import load_checkpoint  # noqa: E402
from ser_edge.data import synth_corpus  # noqa: E402

LABELS = ("neutral", "happy", "sad", "angry")

# The library entry point, for when the full CLI (every command module) is not importable.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from ser_edge.train import TrainConfig, train
    r = train(TrainConfig.from_flat(**json.loads(sys.argv[1])))
    print("RESULT " + json.dumps({"rank": int(os.environ["RANK"]), "world": int(os.environ["WORLD_SIZE"]),
                                  "epochs": r.epochs_run, "test": None if r.test is None else r.test.uar}))
""")


def _cli_available() -> bool:
    try:
        import ser_edge.cli.main  # noqa: F401
    except ImportError:
        return False
    return True


def _torchrun(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_process_training(tmp_path):
    corpus = tmp_path / "corpus"
    synth_corpus(str(corpus), n_speakers=4, per_class=3, labels=LABELS, seed=0)
    out = tmp_path / "run"
    opts = dict(arch="attn_bilstm", hidden=16, layers=1, epochs=2, batch_size=4, ratios=(2, 1, 1))
    if _cli_available():
        args = ["-m", "ser_edge", "train", "--data", "manifest", "--root", str(corpus), "--out", str(out),
                "--arch", opts["arch"], "--hidden", "16", "--layers", "1", "--epochs", "2", "--batch-size", "4",
                "--ratios", "2,1,1", "--threads", "1", "--device", "cpu"]
    else:
        script = tmp_path / "run_train.py"
        script.write_text(SCRIPT)
        cfg = dict(opts, data="manifest", root=str(corpus), out_dir=str(out), device="cpu")
        args = [str(script), json.dumps(cfg)]
    proc = _torchrun(args, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ckpt = load_checkpoint(str(out / "best.pt"))
    assert ckpt.labels == list(LABELS) and ckpt.model_config.arch == "attn_bilstm"
    last = load_checkpoint(str(out / "last.pt"))
    assert last.extra["state"]["finished"] and len(last.extra["state"]["history"]) == 2
    history = json.loads((out / "history.json").read_text())["epochs"]
    assert [r["epoch"] for r in history] == [1, 2]
    for rec in history:  # all-reduced validation metrics are sane numbers
        assert 0.0 <= rec["val_uar"] <= 1.0 and 0.0 <= rec["val_acc"] <= 1.0
        assert rec["val_loss"] > 0 and rec["train_loss"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 12 and metrics["speakers"] == last.extra["split"]["test"]
    assert (out / "metrics_confusion.png").is_file()
    # one writer: rank 0's files only, no leftovers from a second writer racing it
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best.pt", "last.pt", "history.json", "metrics.json", "metrics_confusion.png"])
    if not _cli_available():
        results = sorted((json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")),
                         key=lambda r: r["rank"])
        assert [(r["rank"], r["world"], r["epochs"]) for r in results] == [(0, 2, 2), (1, 2, 2)]
        assert results[0]["test"] is not None and results[1]["test"] is None
    else:
        assert proc.stdout.count("checkpoint:") == 1  # the summary is printed by rank 0 only
