"""``listen --wav`` reads the file from disk in chunks (memory flat in the file's length), refuses
what ``predict`` refuses with the same message, and validates every numeric flag (issue 9)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from ser_edge.runtime.audio import load_audio, resample, write_wav
from ser_edge.runtime.sources import BlockResampler, wav_chunks

SR = 16000


def write_long_wav(path: Path, seconds: float, rate: int = SR, channels: int = 1, block_s: float = 10.0) -> None:
    """A long 16-bit WAV written block by block (the test itself must not hold it in memory):
    speech-like bursts between pauses, so windows are speech and no speech in turn."""
    from ser_edge.runtime.signals import speechlike

    n = int(seconds * rate)
    burst = speechlike(block_s / 2, rate)
    block = np.concatenate([burst, np.zeros(len(burst))])  # 5 s speech, 5 s silence
    pcm = (np.clip(block, -1, 1 - 1 / 32768) * 32767).astype("<i2")
    pcm = np.repeat(pcm[:, None], channels, axis=1).reshape(-1)
    data_bytes = n * channels * 2
    with open(path, "wb") as f:
        f.write(struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, channels, rate,
                            rate * channels * 2, channels * 2, 16, b"data", data_bytes))
        left = n
        while left > 0:
            k = min(left, len(block))
            f.write(pcm[:k * channels].tobytes())
            left -= k


# -- chunked reading ------------------------------------------------------------------------------

@pytest.mark.parametrize("rate,channels", [(16000, 1), (44100, 2), (48000, 1), (8000, 2), (22050, 1)])
def test_wav_chunks_equal_the_whole_file_resampled(tmp_path, rate, channels):
    path = tmp_path / "a.wav"
    write_long_wav(path, 7.3, rate, channels, block_s=3.0)
    whole = load_audio(str(path), SR)
    for chunk_s in (0.1, 0.7, 3.0):
        chunks = list(wav_chunks(str(path), SR, chunk_s=chunk_s))
        step = int(round(chunk_s * SR))
        assert all(len(c) == step for c in chunks[:-1]) and 0 < len(chunks[-1]) <= step
        # the resampler's float32 GEMMs round a little differently on shorter blocks
        np.testing.assert_allclose(np.concatenate(chunks), whole, rtol=0, atol=1e-5)


def test_block_resampler_equals_resample_for_any_blocking():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(3 * 44100 + 17)).astype(np.float32)
    for sizes in ([1000, 5, 30000, 777], [44100], [1] * 50 + [200000]):
        r = BlockResampler(44100, SR)
        out, i, k = [], 0, 0
        while i < len(x):
            out.append(r.push(x[i:i + sizes[k % len(sizes)]]))
            i, k = i + sizes[k % len(sizes)], k + 1
        out.append(r.push(np.zeros(0, np.float32), final=True))
        np.testing.assert_allclose(np.concatenate(out), resample(x, 44100, SR), rtol=0, atol=1e-5)
        assert len(r._buf) < 3 * r.margin + max(sizes)  # only the context of outputs still to come


def test_wav_chunks_refuses_bad_files_before_yielding(tmp_path):
    from ser_edge.runtime.audio import AudioError

    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioError, match="no 'fmt '"):
        next(wav_chunks(str(tmp_path / "corrupt.wav"), SR))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.wav")
        with pytest.raises(AudioError, match="FIFO"):
            next(wav_chunks(str(tmp_path / "fifo.wav"), SR))  # refused, never blocks
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="chunk_s"):
            next(wav_chunks(str(tmp_path / "corrupt.wav"), SR, chunk_s=bad))


# -- memory flat in the input length (a subprocess per run: its own peak RSS) -----------------------

MEASURE = """
import sys
from ser_edge.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    assert not e.code, e.code
with open("/proc/self/status") as f:
    print([ln for ln in f if ln.startswith("VmHWM:")][0].strip(), file=sys.stderr)
"""


def listen_peak_rss(model: Path, wav: Path) -> int:
    """Peak RSS (bytes) of ``ser-edge listen --wav`` in a fresh process: ``VmHWM``, which exec
    resets (``ru_maxrss`` would report the forking pytest process's peak; tracemalloc's own
    bookkeeping multiplies the RSS)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", MEASURE, "listen", "--model", str(model), "--wav", str(wav),
                           "--json"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.splitlines()) > 10
    return 1024 * int([ln for ln in proc.stderr.splitlines() if ln.startswith("VmHWM:")][-1].split()[1])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc for the peak RSS")
def test_listen_memory_does_not_grow_with_the_file(exported_models, tmp_path):
    model = exported_models("lstm") / "model.int8.onnx"
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    write_long_wav(short, 20.0, 44100, 2)
    write_long_wav(long, 400.0, 44100, 2)  # 6 min 40 s of 44.1 kHz stereo: 70 MB on disk
    rss_short, rss_long = listen_peak_rss(model, short), listen_peak_rss(model, long)
    mib = 1 << 20
    # 20x the audio, the same memory (loading it whole would take 70 MB as int16, 140 MB as float32)
    assert rss_long < rss_short + 8 * mib, (rss_short / mib, rss_long / mib)
    assert rss_long < 150 * mib  # issue 9's bound for listen on any length
    assert os.path.getsize(long) > 70_000_000


# -- the command -----------------------------------------------------------------------------------



def test_too_short_file_is_the_error_predict_gives(capsys, exported_models, tmp_path, speechlike):
    model = exported_models("lstm") / "model.npz"
    write_wav(tmp_path / "short.wav", speechlike[:800], SR)
    code_p, _, err_p = run_cli(capsys, "predict", "--model", model, tmp_path / "short.wav")
    code_l, out_l, err_l = run_cli(capsys, "listen", "--model", model, "--wav", tmp_path / "short.wav")
    message = [ln for ln in err_p.splitlines() if ln.startswith("error:")]
    assert code_p != 0 and code_l != 0 and out_l == ""
    assert len(message) == 1 and "too short" in message[0]
    assert message[0] in err_l.splitlines()
    assert "Traceback" not in err_l


@pytest.mark.parametrize("flag,value", [("--chunk", "0"), ("--chunk", "nan"), ("--window", "inf"), ("--window", "0"),
                                        ("--window", "1e9"), ("--hop", "-1"), ("--hop", "nan"), ("--alpha", "0"),
                                        ("--alpha", "1.5"), ("--history", "0"), ("--history", "100000"),
                                        ("--seconds", "0"), ("--seconds", "inf"), ("--vad-level", "3"),
                                        ("--vad-dynamic", "nan")])
def test_numeric_flags_out_of_range_are_usage_errors(capsys, exported_models, tmp_path, speechlike, flag, value):
    write_wav(tmp_path / "a.wav", speechlike, SR)
    code, out, err = run_cli(capsys, "listen", "--model", exported_models("lstm") / "model.npz",
                             "--wav", tmp_path / "a.wav", flag, value)
    assert code == 2 and out == "" and "Traceback" not in err
    assert flag in err


@pytest.mark.parametrize("model,mode", [("model.npz", "stateful"), ("model.int8.onnx", "stateful")])
def test_listen_says_which_mode(capsys, exported_models, tmp_path, speechlike, model, mode):
    write_wav(tmp_path / "a.wav", np.concatenate([speechlike] * 3), SR)
    code, out, err = run_cli(capsys, "listen", "--model", exported_models("lstm") / model, "--wav", tmp_path / "a.wav",
                             "--json", "--no-vad")
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if ln.startswith("listen:")]
    assert len(notes) == 1 and notes[0].startswith(f"listen: {mode} mode")
    hops = [json.loads(ln) for ln in out.splitlines()]
    assert [h["end_s"] for h in hops] == [2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    code, _, err = run_cli(capsys, "listen", "--model", exported_models("attn_bilstm") / "model.npz",
                           "--wav", tmp_path / "a.wav", "--hop", "0.25", "--mode", "auto")
    assert code == 0 and "listen: incremental mode" in err
    code, _, err = run_cli(capsys, "listen", "--model", exported_models("attn_bilstm") / "model.npz",
                           "--wav", tmp_path / "a.wav", "--mode", "stateful")
    assert code == 2 and "stateful mode impossible" in err
