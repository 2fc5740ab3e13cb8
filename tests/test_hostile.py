"""Hostile inputs (issue 9): odd file kinds, headers that lie about their size, models whose
metadata or archives would exhaust the machine, flags out of range, state left by killed runs.
Every test here failed (hung, crashed or used GiBs) before the fix it covers."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ser_edge.runtime.audio import AudioError, read_wav, write_wav

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models"
ONNX_MODEL = SHIPPED / "ser-edge-ravdess.int8.onnx"
NPZ_MODEL = SHIPPED / "ser-edge-ravdess.npz"
#: A CLI call that blocks (the bug) is killed after this long; a working one takes a few seconds.
CLI_TIMEOUT_S = 120
#: Prints the peak resident memory of the process. VmHWM, not ru_maxrss: Linux keeps ru_maxrss
#: across exec, so a child of a pytest that holds torch would report pytest's own peak.
PEAK_RSS = "print([line for line in open('/proc/self/status') if line.startswith('VmHWM:')][0])\n"


def cli(*args, timeout: float = CLI_TIMEOUT_S, env_extra=None) -> subprocess.CompletedProcess:
    """``ser-edge ARGS`` in a fresh process (so a hang is a timeout, not a stuck test run)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "ser_edge", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def wav_header(data_bytes: int, rate: int = 16000, channels: int = 1, bits: int = 16) -> bytes:
    """A canonical 44-byte PCM header promising ``data_bytes`` of audio."""
    block = channels * bits // 8
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", (36 + data_bytes) & 0xFFFFFFFF, b"WAVE", b"fmt ", 16, 1,
                       channels, rate, rate * block, block, bits, b"data", data_bytes)


@pytest.fixture
def good_wav(tmp_path, speechlike) -> Path:
    path = tmp_path / "good.wav"
    write_wav(path, speechlike, 16000)
    return path


# ------------------------------------------------------------------------------------------
# Input files: non-regular files, headers that promise GiBs, memory
# ------------------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_predict_refuses_a_fifo_without_blocking_and_runs_the_other_files(tmp_path, good_wav):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)  # nobody ever writes: opening it for reading in blocking mode hangs forever
    res = cli("predict", fifo, tmp_path, good_wav, "--model", NPZ_MODEL, "--backend", "numpy")
    assert res.returncode == 1, res.stderr
    errors = res.stderr.strip().splitlines()
    assert any("pipe.wav" in e and "FIFO" in e for e in errors), errors
    assert any(str(tmp_path) in e and "directory" in e for e in errors), errors
    assert len(errors) == 2 and "Traceback" not in res.stderr
    assert res.stdout.startswith(str(good_wav))  # the good file after them still ran


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_device_files_are_refused_before_opening():
    with pytest.raises(AudioError, match="character device"):
        read_wav("/dev/zero")  # would stream zeros forever


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_open_regular_refuses_a_fifo_swapped_in_after_stat(tmp_path, monkeypatch):
    """The second guard: the path passes ``os.stat`` but is a FIFO by the time it is opened;
    O_NONBLOCK keeps that open from hanging and ``fstat`` refuses it."""
    from ser_edge.runtime import audio

    fifo = tmp_path / "swapped.wav"
    os.mkfifo(fifo)
    regular = os.stat(__file__)
    real_stat = os.stat
    monkeypatch.setattr(audio.os, "stat", lambda p, *a, **k: regular if os.fspath(p) == str(fifo) else real_stat(p))
    with pytest.raises(AudioError, match="FIFO"):
        audio.open_regular(fifo)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc")
def test_a_header_promising_1_gib_is_refused_from_the_header(tmp_path):
    """A sparse 1 GiB file (the header is honest about its size; no data is written): predict
    refuses it by duration before reading a sample, points to listen, and stays small."""
    big = tmp_path / "huge.wav"
    with open(big, "wb") as f:
        f.write(wav_header(1 << 30))
        f.truncate(44 + (1 << 30))
    code = ("import sys\nfrom ser_edge.runtime import Recognizer\n"
            f"rec = Recognizer.load({str(NPZ_MODEL)!r}, backend='numpy')\n"
            "try:\n    rec.predict(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
            + PEAK_RSS)
    res = subprocess.run([sys.executable, "-c", code, str(big)], capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert "AudioError" in res.stdout and "listen" in res.stdout and "predict's limit" in res.stdout, res.stdout
    rss_mib = int(res.stdout.split("VmHWM:")[1].split()[0]) / 1024
    assert rss_mib < 300, rss_mib


def test_a_header_lying_about_its_size_is_truncated_not_allocated(tmp_path):
    liar = tmp_path / "liar.wav"
    liar.write_bytes(wav_header(1 << 30) + b"\x00\x01" * 800)
    with pytest.raises(AudioError, match="truncated: header promises 1073741824 bytes"):
        read_wav(liar)


def test_read_wav_checks_the_duration_before_reading(tmp_path):
    from ser_edge.runtime.audio import AudioTooLongError

    path = tmp_path / "ten.wav"
    write_wav(path, np.full(16000 * 10, 0.1, np.float32), 16000)
    with pytest.raises(AudioTooLongError) as info:
        read_wav(path, max_seconds=5)
    assert info.value.seconds == pytest.approx(10.0) and info.value.limit == 5
    assert len(read_wav(path)[0]) == 160000


def test_streaming_writer_header_and_blocks_match_a_whole_read(tmp_path):
    """Bounded-block decoding gives exactly what one whole read gives (odd sizes, stereo 24-bit)."""
    from ser_edge.runtime import audio

    rng = np.random.default_rng(1)
    pcm = rng.integers(-(1 << 23), 1 << 23, size=(12345, 2))
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in pcm.ravel())
    path = tmp_path / "s24.wav"
    path.write_bytes(wav_header(0xFFFFFFFF, 16000, 2, 24) + raw)  # an unpatched streaming header
    whole, sr = read_wav(path)
    expected = (pcm / float(1 << 23)).astype(np.float32).mean(axis=1, dtype=np.float32)
    np.testing.assert_array_equal(whole, expected)
    blocks = [b for b, _ in audio.iter_wav(path, block_frames=1000)]
    assert [len(b) for b in blocks][:2] == [1000, 1000] and sum(map(len, blocks)) == 12345
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_memory_error_is_a_one_line_error_for_that_file_only(tmp_path, good_wav, monkeypatch, capsys):
    from ser_edge.cli.main import main
    from ser_edge.runtime import audio

    real_blocks = audio._blocks

    def blocks(f, info, n):
        if info.name.endswith("oom.wav"):
            raise MemoryError
        return real_blocks(f, info, n)

    monkeypatch.setattr(audio, "_blocks", blocks)
    oom = tmp_path / "oom.wav"
    oom.write_bytes(good_wav.read_bytes())
    with pytest.raises(SystemExit) as ex:
        main(["predict", str(oom), str(good_wav), "--model", str(NPZ_MODEL), "--backend", "numpy"])
    out, err = capsys.readouterr()
    assert ex.value.code == 1
    assert err.strip().splitlines() == [f"error: {oom}: not enough memory to read 2 s of audio"]
    assert out.startswith(str(good_wav))


def test_predict_refuses_long_arrays_too(speechlike):
    from ser_edge.runtime import Recognizer
    from ser_edge.runtime.recognizer import MAX_PREDICT_S

    rec = Recognizer.load(NPZ_MODEL, backend="numpy")
    with pytest.raises(AudioError, match="listen"):
        rec.predict(np.zeros(int(MAX_PREDICT_S * 8000) + 1, np.float32), sample_rate=8000)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("sr, channels, bits", [(48000, 2, 64), (384000, 1, 32)], ids=["48k-stereo-f64", "384k-f32"])
def test_predict_peak_memory_at_the_length_limit(tmp_path, sr, channels, bits):
    """The longest clip predict accepts, in the bulkiest formats (64-bit float stereo; the highest
    rate read_wav accepts), resampled to 16 kHz, stays under the 300 MiB promised for a Pi."""
    from ser_edge.runtime.recognizer import MAX_PREDICT_S

    n = int(MAX_PREDICT_S * sr) - sr // 10  # just under the limit
    path = tmp_path / "long.wav"
    with open(path, "wb") as f:
        f.write(struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + n * channels * bits // 8, b"WAVE", b"fmt ", 16, 3,
                            channels, sr, sr * channels * bits // 8, channels * bits // 8, bits, b"data",
                            n * channels * bits // 8))
        for i in range(0, n, sr):  # a second at a time: the test itself stays small
            t = np.arange(i, min(n, i + sr)) / sr
            y = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))
            f.write(np.repeat(y[:, None], channels, axis=1).astype(f"<f{bits // 8}").tobytes())
    code = ("import sys\nfrom ser_edge.runtime import Recognizer\n"
            f"rec = Recognizer.load({str(ONNX_MODEL)!r})\n"
            "print(rec.predict(sys.argv[1]).label)\n"
            + PEAK_RSS)
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         timeout=CLI_TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    rss_mib = int(res.stdout.split("VmHWM:")[1].split()[0]) / 1024
    assert rss_mib < 300, rss_mib


# ------------------------------------------------------------------------------------------
# Models from elsewhere: metadata costs, npz sizes, .tflite integrity
# ------------------------------------------------------------------------------------------

def _shipped_props() -> dict:
    """The shipped model's metadata props (the sidecar holds them, plus its digest)."""
    from ser_edge.runtime.backends.litert import DIGEST_KEY

    props = json.loads((SHIPPED / "ser-edge-ravdess.int8.tflite.json").read_text())
    props.pop(DIGEST_KEY)
    return props


def _props_with(**fields) -> dict:
    from ser_edge.runtime.features import FeatureConfig

    base = json.loads(_shipped_props()["ser_edge.feature_config"])
    base.update(fields)
    stats = {k: base.pop(k) for k in ("mean", "std")}
    cfg = FeatureConfig.from_dict(base)
    n = cfg.n_features
    mean = stats["mean"] if len(stats["mean"]) == n else [0.0] * n
    std = stats["std"] if len(stats["std"]) == n else [1.0] * n
    def fit(values):  # a hostile list is given for one width; repeat it to the model's width
        return (list(values) * n)[:n]

    cfg = cfg.with_stats(fit(fields["mean"]) if "mean" in fields else mean,
                         fit(fields["std"]) if "std" in fields else std)
    props = _shipped_props()
    props["ser_edge.feature_config"] = cfg.to_json()
    props.pop("ser_edge.selftest")  # recorded for the shipped config only
    return props


@pytest.mark.parametrize("fields, words", [
    (dict(n_fft=65536, win_length=65536, hop_length=1), "frames per second"),
    (dict(sample_rate=1 << 24), "sample_rate"),
    (dict(std=[1e-300] * 40), "std"),
    (dict(std=[1e300] * 40), "std"),
    (dict(mean=[1e200] * 40), "mean"),
    (dict(n_fft=16384, win_length=16384, hop_length=160), "STFT"),
    (dict(sample_rate=96000, n_fft=2048, win_length=2048, hop_length=480), "STFT"),
    (dict(hop_length=16, n_fft=64, win_length=64, n_mels=128), "feature values per second"),
])
def test_metadata_whose_costs_exhaust_the_machine_is_refused(fields, words):
    from ser_edge.runtime.metadata import MetadataError, ModelMetadata

    with pytest.raises(MetadataError, match=words):
        ModelMetadata.from_props(_props_with(**fields), "hostile.onnx")


@pytest.mark.parametrize("fields", [
    {},  # the shipped model's config
    dict(n_fft=4096, win_length=4096, hop_length=1024, n_mels=128),
    dict(n_fft=4096, win_length=4096, hop_length=2048, n_mels=128),
    dict(schema_version=2, base="logmel", n_fft=4096, win_length=4096, hop_length=1024, n_mels=128, n_chroma=12,
         deltas=2),
    dict(schema_version=2, n_mels=128, n_chroma=12, deltas=2),
    dict(schema_version=2, base="logmel", n_fft=1024, win_length=1024, n_mels=128, n_chroma=12, deltas=2),
    dict(schema_version=2, n_fft=512, win_length=400, hop_length=80, n_mfcc=40, n_chroma=12, deltas=2),
    dict(sample_rate=48000, n_fft=1024, win_length=1024, hop_length=480),
])
def test_real_feature_configs_stay_within_the_cost_limits(fields):
    from ser_edge.runtime.metadata import ModelMetadata

    ModelMetadata.from_props(_props_with(**fields), "fine.onnx")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc")
def test_features_of_a_predict_length_clip_stay_small_at_the_cost_limits():
    """A config at the STFT-rate limit with 396 inputs per frame: features of a MAX_PREDICT_S
    clip add well under the 300 MiB budget (the model and the waveform take the rest)."""
    from ser_edge.runtime.metadata import MAX_FEATURE_RATE, MAX_STFT_RATE, ModelMetadata

    fields = dict(schema_version=2, base="logmel", n_fft=1024, win_length=1024, hop_length=125, n_mels=128,
                  n_chroma=12, deltas=2)
    cfg = ModelMetadata.from_props(_props_with(**fields), "limit.onnx").feature_config  # passes, at the limits
    assert cfg.sample_rate * cfg.n_fft / cfg.hop_length == MAX_STFT_RATE
    assert cfg.sample_rate / cfg.hop_length * cfg.n_features > 0.75 * MAX_FEATURE_RATE
    code = ("import numpy as np\nfrom ser_edge.runtime.features import FeatureConfig, extract\n"
            "from ser_edge.runtime.recognizer import MAX_PREDICT_S\n"
            f"cfg = FeatureConfig.from_json({cfg.to_json()!r})\n"
            "y = (0.1 * np.sin(np.arange(int(MAX_PREDICT_S * cfg.sample_rate)) * 0.05)).astype(np.float32)\n"
            + PEAK_RSS + "extract(y, cfg)\n" + PEAK_RSS)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    before, after = (int(part.split()[0]) / 1024 for part in res.stdout.split("VmHWM:")[1:])
    assert after - before < 160, (before, after)


def test_every_shipped_model_loads_under_the_limits():
    from ser_edge.runtime import Recognizer

    for name in ("ser-edge-ravdess.int8.onnx", "ser-edge-ravdess.onnx", "ser-edge-ravdess.npz"):
        assert Recognizer.load(SHIPPED / name).labels


def _rewrite_npz(src: Path, dst: Path, replace: dict) -> None:
    """Copy of an npz with members replaced by raw ``.npy`` bytes (``name -> bytes``), deflated."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename not in replace:
                zout.writestr(info.filename, zin.read(info))
        for name, data in replace.items():
            with zout.open(name, "w", force_zip64=True) as f:
                for i in range(0, len(data) if isinstance(data, bytes) else 0, 1 << 20):
                    f.write(data[i:i + (1 << 20)])
                if not isinstance(data, bytes):  # (header, n zero bytes) without building them in memory
                    header, n = data
                    f.write(header)
                    zero = bytes(1 << 20)
                    for i in range(0, n, 1 << 20):
                        f.write(zero[:min(1 << 20, n - i)])


def _npy_header(shape, dtype="<f4") -> bytes:
    import io as _io

    buf = _io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_npz_members_that_decompress_to_gibs_are_refused_from_the_headers(tmp_path):
    """A 256 MiB member (a few hundred kB deflated) whose .npy header promises a small array, and
    one whose header promises 2**40 floats: both refused before anything large is inflated."""
    from ser_edge.runtime.backends.numpy_lstm import NumpyLSTMBackend, check_npz_members
    from ser_edge.runtime.metadata import MetadataError

    bomb = tmp_path / "bomb.npz"
    _rewrite_npz(NPZ_MODEL, bomb, {"head.b.npy": (_npy_header((8,)), 256 << 20)})
    with pytest.raises(MetadataError, match="MiB uncompressed"):
        check_npz_members(str(bomb))
    liar = tmp_path / "liar.npz"
    _rewrite_npz(NPZ_MODEL, liar, {"head.b.npy": _npy_header((1 << 40,)) + bytes(32)})
    with pytest.raises(MetadataError, match="needs 4398046511"):
        NumpyLSTMBackend(str(liar))
    padded = tmp_path / "padded.npz"  # right header, 4 MiB of extra bytes behind the array
    _rewrite_npz(NPZ_MODEL, padded, {"head.b.npy": _npy_header((8,)) + bytes(32 + (4 << 20))})
    with pytest.raises(MetadataError, match="head.b.npy"):
        NumpyLSTMBackend(str(padded))
    check_npz_members(str(NPZ_MODEL))  # the shipped model passes


def _copy_tflite(tmp_path: Path, flip_at=None, sidecar=True, digest=True) -> Path:
    from ser_edge.runtime.backends.litert import DIGEST_KEY

    src = SHIPPED / "ser-edge-ravdess.int8.tflite"
    dst = tmp_path / "model.int8.tflite"
    data = bytearray(src.read_bytes())
    if flip_at is not None:
        data[flip_at] ^= 0xFF
    dst.write_bytes(bytes(data))
    if sidecar:
        props = json.loads(Path(str(src) + ".json").read_text())
        if not digest:
            props.pop(DIGEST_KEY)
        Path(str(dst) + ".json").write_text(json.dumps(props))
    return dst


def test_shipped_tflite_sidecar_carries_the_files_digest():
    from ser_edge.runtime.backends.litert import load_verified

    assert load_verified(str(SHIPPED / "ser-edge-ravdess.int8.tflite"))


@pytest.mark.parametrize("case, words", [
    ("flipped", "sha256 does not match"),
    ("no digest", "no ser_edge.sha256"),
    ("no sidecar", "no model.int8.tflite.json sidecar"),
])
def test_tflite_integrity_is_checked_before_litert_sees_the_file(tmp_path, monkeypatch, case, words):
    from ser_edge.runtime.backends import litert
    from ser_edge.runtime.metadata import MetadataError

    def never(*a, **k):
        raise AssertionError("LiteRT was handed an unverified file")

    monkeypatch.setattr(litert, "_interpreter_class", never)
    flip = len((SHIPPED / "ser-edge-ravdess.int8.tflite").read_bytes()) // 2
    path = _copy_tflite(tmp_path, flip_at=flip if case == "flipped" else None, sidecar=case != "no sidecar",
                        digest=case != "no digest")
    with pytest.raises(MetadataError, match=words):
        litert.LiteRTBackend(str(path))


def test_write_digest_lets_a_trusted_old_export_load(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from ser_edge.runtime import Recognizer
    from ser_edge.runtime.backends.litert import write_digest

    path = _copy_tflite(tmp_path, digest=False)
    write_digest(str(path))
    assert Recognizer.load(path).labels == Recognizer.load(NPZ_MODEL).labels


# ------------------------------------------------------------------------------------------
# Flags: every numeric flag has a range; output paths of the wrong kind
# ------------------------------------------------------------------------------------------

def _one_line_error(res: subprocess.CompletedProcess, *words: str) -> None:
    assert res.returncode not in (0, None) and "Traceback" not in res.stderr, res.stderr
    assert all(w in res.stderr for w in words), res.stderr


def test_threads_are_bounded(good_wav):
    from ser_edge.runtime import Recognizer
    from ser_edge.runtime.errors import SerEdgeError
    from ser_edge.runtime.recognizer import MAX_THREADS

    _one_line_error(cli("predict", good_wav, "--threads", "2000", "--model", NPZ_MODEL), "--threads", str(MAX_THREADS))
    _one_line_error(cli("bench", "--model", NPZ_MODEL, "--threads", "1,2000", "--no-cold-start"), "--threads")
    _one_line_error(cli("bench", "--model", NPZ_MODEL, "--repeats", "0", "--no-cold-start"), "--repeats")
    with pytest.raises(SerEdgeError, match="threads"):
        Recognizer.load(NPZ_MODEL, threads=MAX_THREADS + 1)


def test_bench_json_output_that_is_a_directory_fails_before_the_benchmark(tmp_path):
    res = cli("bench", "--model", NPZ_MODEL, "--json-out", tmp_path, "--no-cold-start", "--repeats", "1")
    _one_line_error(res, "is a directory")
    assert "model" not in res.stdout  # refused before running


def test_export_out_that_is_an_existing_file(tmp_path, random_checkpoint):
    target = tmp_path / "out.txt"
    target.write_text("a file, not a directory")
    _one_line_error(cli("export", random_checkpoint("lstm"), "--out", target), "is an existing file")
    _one_line_error(cli("export", random_checkpoint("lstm"), "--out", target / "sub"), "which is a file")
    assert target.read_text() == "a file, not a directory"


@pytest.mark.parametrize("args, words", [
    (["--speakers", "0"], "speaker"), (["--per-class", "100000"], "clips per speaker"), (["--seed", "-1"], "seed"),
    (["--sample-rate", "100"], "sample_rate"),
])
def test_data_synth_numeric_flags_have_ranges(tmp_path, args, words):
    _one_line_error(cli("data", "synth", tmp_path / "s", *args), words)


# ------------------------------------------------------------------------------------------
# State on disk: reports describe the files beside them; leftovers of killed runs are cleaned
# ------------------------------------------------------------------------------------------

def _dead_pid() -> int:
    """The pid of a process that has exited (what a killed run leaves in its temp names)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _temp_name(name: str, pid: int, tail: str = "abc123") -> str:
    from ser_edge.runtime.io import temp_prefix

    return temp_prefix(name).replace(f".{os.getpid()}.", f".{pid}.") + tail


def test_atomic_writes_remove_stale_temps_of_dead_processes_only(tmp_path):
    from ser_edge.runtime import io as rio

    dead, live = _dead_pid(), os.getpid()
    stale = tmp_path / _temp_name("best.pt", dead, "x1.pt")
    stale_dir = tmp_path / _temp_name("export", dead)
    (stale_dir / "sub").mkdir(parents=True)
    (stale_dir / "sub" / "model.onnx").write_bytes(b"partial")
    mine = tmp_path / _temp_name("best.pt", live, "x2.pt")
    other_host = tmp_path / (".best.pt.ser-edge-tmp.elsewhere." + str(dead) + ".x3.pt")
    user_files = [tmp_path / ".hidden", tmp_path / "notes.tmp", tmp_path / ".best.pt.abc.tmp.pt"]
    legacy_old, legacy_new = tmp_path / ".best.pt.k2j4_x9q.tmp.pt", tmp_path / ".last.pt.a1b2c3d4.tmp.pt"
    for p in (stale, mine, other_host, legacy_old, legacy_new, *user_files):
        p.write_bytes(b"x")
    old = os.stat(legacy_old).st_mtime - 2 * rio.LEGACY_TEMP_AGE_S
    os.utime(legacy_old, (old, old))  # a pre-pid temp file from a run killed long ago
    rio._CLEANED.discard(str(tmp_path))
    rio.atomic_write_text(tmp_path / "report.txt", "done")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([mine.name, other_host.name, legacy_new.name, "report.txt", *(p.name for p in user_files)])


def test_atomic_temp_names_are_recognisable():
    from ser_edge.runtime.io import _TEMP_RE, temp_prefix

    m = _TEMP_RE.match(temp_prefix("model.onnx") + "k2j3.onnx")
    assert m and int(m.group(2)) == os.getpid()


def test_failed_gate_keeps_the_earlier_good_export_and_its_report(tmp_path, random_checkpoint, monkeypatch):
    from ser_edge.export import GateFailure, export_all, parity

    ckpt = random_checkpoint("lstm")
    export_all(ckpt, tmp_path, formats="numpy")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert "parity.json" in before
    monkeypatch.setitem(parity.GATES, "fp32_max_abs_diff", -1.0)  # nothing can pass this
    with pytest.raises(GateFailure, match="parity.failed.json"):
        export_all(ckpt, tmp_path, formats="numpy")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {k: v for k, v in after.items() if k != "parity.failed.json"} == before
    assert json.loads(after["parity.failed.json"])["passed"] is False
    monkeypatch.undo()
    export_all(ckpt, tmp_path, formats="numpy")  # a later good export supersedes the failure report
    assert not (tmp_path / "parity.failed.json").exists()


def test_next_export_cleans_up_after_a_killed_one(tmp_path, random_checkpoint):
    from ser_edge.export import export_all

    dead = _dead_pid()
    staging = tmp_path / _temp_name("export", dead)
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"half a model")
    tmp_file = tmp_path / _temp_name("parity.json", dead, "q.json")
    tmp_file.write_text("{")
    export_all(random_checkpoint("lstm"), tmp_path, formats="numpy")
    assert not staging.exists() and not tmp_file.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_committed_publish_interrupted_midway_is_completed_by_the_next_run(tmp_path):
    """Killed after moving one of two models: the directory briefly holds no parity.json (never
    a stale one); the next run moves the rest and the report that describes them."""
    from ser_edge.export.pipeline import COMMIT_MARKER, PARITY_FILE, recover_staging

    (tmp_path / PARITY_FILE).write_text('{"old": true}')
    (tmp_path / "model.onnx").write_text("new onnx")  # already moved before the kill
    (tmp_path / "model.npz").write_text("old npz")
    staging = tmp_path / _temp_name("export", _dead_pid())
    staging.mkdir()
    (staging / "model.npz").write_text("new npz")
    (staging / PARITY_FILE).write_text('{"new": true}')
    (staging / COMMIT_MARKER).write_text(json.dumps({"files": ["model.onnx", "model.npz"]}))
    assert recover_staging(str(tmp_path)) == [str(staging)]
    assert (tmp_path / "model.npz").read_text() == "new npz" and (tmp_path / "model.onnx").read_text() == "new onnx"
    assert json.loads((tmp_path / PARITY_FILE).read_text()) == {"new": True}
    assert not staging.exists()


# ------------------------------------------------------------------------------------------
# Corpora: the runtime's checks in data info and training; loaders that say what they expected
# ------------------------------------------------------------------------------------------

def _manifest_corpus(root: Path, speechlike: np.ndarray) -> Path:
    """Two speakers x two labels of good clips, plus a silent, a 1-sample and an unreadable file."""
    rows = ["path,label,speaker"]
    for spk in ("s1", "s2"):
        for lab in ("happy", "sad"):
            name = f"{spk}_{lab}.wav"
            write_wav(root / name, speechlike * (0.5 if lab == "sad" else 1.0), 16000)
            rows.append(f"{name},{lab},{spk}")
    write_wav(root / "silent.wav", np.zeros(16000, np.float32), 16000)
    write_wav(root / "one.wav", np.full(1, 0.5, np.float32), 16000)
    (root / "junk.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnope")
    rows += ["silent.wav,happy,s1", "one.wav,sad,s2", "junk.wav,sad,s1"]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def test_data_info_applies_the_runtime_checks_and_says_why(tmp_path, speechlike):
    root = _manifest_corpus(tmp_path, speechlike)
    res = cli("data", "info", "--data", "manifest", "--root", root)
    assert res.returncode == 0, res.stderr
    assert "utterances: 4" in res.stdout and "skipped: 3" in res.stdout
    for name, why in (("silent.wav", "silent"), ("one.wav", "too short"), ("junk.wav", "no 'fmt ' chunk")):
        assert any(name in line and why in line for line in res.stdout.splitlines()), (name, res.stdout)


def test_feature_store_skips_what_the_runtime_refuses(tmp_path, speechlike):
    from ser_edge.data import FeatureStore, load_corpus
    from ser_edge.runtime.features import FeatureConfig

    index = load_corpus("manifest", _manifest_corpus(tmp_path, speechlike))
    kept, skipped = FeatureStore(FeatureConfig()).load(index)
    assert len(kept) == 4
    reasons = {os.path.basename(u.path): why for u, why in skipped}
    assert set(reasons) == {"silent.wav", "one.wav", "junk.wav"}
    assert "silent" in reasons["silent.wav"] and "too short" in reasons["one.wav"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_a_fifo_in_a_corpus_is_skipped_without_blocking(tmp_path, speechlike):
    root = tmp_path / "corpus"
    for lab in ("angry", "calm"):
        for spk in ("a", "b"):
            (root / lab / spk).mkdir(parents=True)
            write_wav(root / lab / spk / "x.wav", speechlike, 16000)
    os.mkfifo(root / "angry" / "a" / "pipe.wav")
    res = cli("data", "info", "--data", "folder", "--root", root)
    assert res.returncode == 0 and "utterances: 4" in res.stdout, res.stderr
    assert any("pipe.wav" in line and "FIFO" in line for line in res.stdout.splitlines()), res.stdout
    from ser_edge.data import FeatureStore
    from ser_edge.data.corpora import Utterance
    from ser_edge.runtime.features import FeatureConfig

    fifo_utt = Utterance(str(root / "angry" / "a" / "pipe.wav"), "angry", "a", "folder")
    kept, skipped = FeatureStore(FeatureConfig()).load([fifo_utt])  # training's path: refused, not opened
    assert kept == [] and "FIFO" in skipped[0][1]


def _ravdess_like(root: Path, names) -> Path:
    for actor, stem in names:
        d = root / f"Actor_{actor}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{stem}.wav").write_bytes(b"")
    return root


def test_ravdess_loader_refuses_a_corpus_with_codes_ravdess_never_uses(tmp_path):
    """BanglaSER uses the same pattern: 01 is happy there, with strong intensity; statements
    01-03 and actors up to 34. Read as RAVDESS it would be silently mislabelled."""
    from ser_edge.data import DataError, load_corpus

    names = [(f"{a:02d}", f"03-01-{e:02d}-{i:02d}-{s:02d}-01-{a:02d}") for a in (1, 2, 30) for e in (1, 2, 3, 4, 5)
             for i in (1, 2) for s in (1, 2, 3)]
    with pytest.raises(DataError, match="codes RAVDESS never uses.*BanglaSER"):
        load_corpus("ravdess", _ravdess_like(tmp_path, names))


@pytest.mark.parametrize("stem, why", [
    ("03-01-01-02-01-01-01", "neutral (01) with strong intensity"), ("03-01-09-01-01-01-01", "emotion code 09"),
    ("03-03-03-01-01-01-01", "vocal channel code 03"), ("03-01-03-01-03-01-01", "statement code 03"),
    ("03-01-03-01-01-03-01", "repetition code 03"), ("04-01-03-01-01-01-01", "modality code 04"),
    ("03-01-03-03-01-01-01", "intensity code 03"), ("03-01-03-01-01-01-02", "actor code 02 in folder Actor_01"),
])
def test_ravdess_loader_validates_every_code_field(tmp_path, stem, why):
    from ser_edge.data import load_corpus

    good = [("01", f"03-01-{e:02d}-01-{s:02d}-{r:02d}-01") for e in range(1, 9) for s in (1, 2) for r in (1, 2)]
    good += [("01", f"03-01-{e:02d}-02-{s:02d}-{r:02d}-01") for e in range(2, 9) for s in (1, 2) for r in (1, 2)]
    index = load_corpus("ravdess", _ravdess_like(tmp_path, good + [("01", stem)]))
    assert len(index) == len(good)  # one odd file in 61 is skipped with its reason, not fatal
    reasons = {os.path.basename(p): r for p, r in index.skipped}
    assert why in reasons[stem + ".wav"] and reasons[stem + ".wav"].startswith("not RAVDESS")


@pytest.mark.parametrize("layout, words", [
    ("flat", "found 0 WAVs in label directory|found 3 WAVs directly in the root"),
    ("one level too high", "found 3 WAVs in label directory 'wavs'"),
])
def test_folder_loader_says_what_layout_it_expected_and_found(tmp_path, layout, words):
    from ser_edge.data import DataError, load_corpus

    where = tmp_path if layout == "flat" else tmp_path / "wavs"
    where.mkdir(exist_ok=True)
    for i in range(3):
        (where / f"clip{i}.wav").write_bytes(b"")
    with pytest.raises(DataError, match=f"expected <root>/<label>/.*({words})"):
        load_corpus("folder", tmp_path)


def test_non_seekable_streams_are_read_and_bounded(good_wav, monkeypatch):
    import io as _io

    from ser_edge.runtime import audio

    class Pipe(_io.RawIOBase):  # read() only, like a pipe
        def __init__(self, data):
            self._buf = _io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self._buf.readinto(b)

    blob = good_wav.read_bytes()
    y, sr = read_wav(_io.BufferedReader(Pipe(blob)))
    np.testing.assert_array_equal(y, read_wav(good_wav)[0])
    monkeypatch.setattr(audio, "MAX_STREAM_BYTES", 1000)
    with pytest.raises(AudioError, match="non-seekable stream"):
        read_wav(_io.BufferedReader(Pipe(blob)))
