"""benchmarks/run.py: a tiny end-to-end smoke run (JSON complete, numbers positive, pipelines
agree) plus its model discovery and timing helpers. Never asserts anything about speed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    """benchmarks/run.py as a module; its import-time thread settings are undone afterwards."""
    saved = dict(os.environ)
    sys.path.insert(0, str(RUN.parent))
    try:
        spec = importlib.util.spec_from_file_location("ser_edge_bench_run", RUN)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(RUN.parent))
        os.environ.clear()
        os.environ.update(saved)


# ---------------------------------------------------------------------------------------
# Helpers (fast)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("model.int8.onnx", ("onnx-int8", "model")), ("model.onnx", ("onnx-fp32", "model")),
    ("ser-edge-ravdess.int8.tflite", ("tflite-int8", "ser-edge-ravdess")), ("m.tflite", ("tflite-fp32", "m")),
    ("model.int8.ts", ("ts-int8", "model")), ("model.ts", ("ts-fp32", "model")), ("model.npz", ("npz", "model")),
    ("ser-edge-ravdess.pt", ("checkpoint", "ser-edge-ravdess")),
    ("model.tflite.json", None), ("parity.json", None), (".onnx", None),
])
def test_classify(bench, name, expected):
    assert bench.classify(name) == expected


def _touch(d: Path, *names: str) -> None:
    for n in names:
        (d / n).write_bytes(b"x")


def test_find_models_prefers_the_shipped_name_and_refuses_ambiguity(bench, tmp_path):
    _touch(tmp_path, "ser-edge-ravdess.onnx", "ser-edge-ravdess.int8.onnx", "ser-edge-ravdess.pt",
           "other.onnx", "parity.json")
    found = bench.find_models(tmp_path)
    assert {k: p.name for k, p in found.items()} == {
        "onnx-fp32": "ser-edge-ravdess.onnx", "onnx-int8": "ser-edge-ravdess.int8.onnx",
        "checkpoint": "ser-edge-ravdess.pt"}
    assert bench.find_models(tmp_path, "other") == {"onnx-fp32": tmp_path / "other.onnx"}

    ambiguous = tmp_path / "two"
    ambiguous.mkdir()
    _touch(ambiguous, "a.onnx", "b.npz")
    with pytest.raises(bench.BenchError, match="several models"):
        bench.find_models(ambiguous)
    only_ckpt = tmp_path / "ckpt"
    only_ckpt.mkdir()
    _touch(only_ckpt, "model.pt")
    with pytest.raises(bench.BenchError, match="no runtime model"):
        bench.find_models(only_ckpt)


def test_interleaved_calls_everything_equally_and_rotates_the_order(bench):
    calls = []
    fns = {name: (lambda x, name=name: calls.append((name, x))) for name in "abc"}
    times = bench.interleaved_ms(fns, [1, 2], repeat=3)
    assert calls[:3] == [("a", 1), ("b", 1), ("c", 1)]  # one warm-up each
    timed = calls[3:]
    assert len(timed) == 3 * 2 * 3
    assert {name: sum(n == name for n, _ in timed) for name in "abc"} == {"a": 6, "b": 6, "c": 6}
    firsts = [timed[i][0] for i in range(0, len(timed), 3)]
    assert set(firsts) == {"a", "b", "c"}  # no pipeline always goes first
    for name in "abc":
        assert len(times[name]["wall"]) == len(times[name]["cpu"]) == 6
        assert all(t >= 0 for t in times[name]["wall"] + times[name]["cpu"])


def test_ratio_and_synthetic_clips(bench, tmp_path):
    assert bench.ratio(10.0, 2.0) == 5.0 and bench.ratio(None, 2.0) is None and bench.ratio(1.0, 0.0) is None
    paths = bench.synthetic_clips(tmp_path, 3, 16000)
    from ser_edge.runtime.audio import read_wav

    lengths = []
    for p in paths:
        y, sr = read_wav(p)
        assert sr == 16000 and np.abs(y).max() > 0.05
        lengths.append(len(y))
    assert lengths == sorted(lengths) and lengths[0] == 24000 and lengths[-1] == 56000


def test_hi_rate_clips_are_stereo_at_the_rate_and_read_back_as_their_mean(bench, tmp_path):
    """The 44.1/48 kHz inputs are real stereo WAVs in the temp dir; the runtime reads them as the
    channel mean, and they carry the clip (brought up by soxr HQ) at the new rate."""
    import wave

    pytest.importorskip("soxr")
    from ser_edge.runtime.audio import read_wav, resample

    clip = bench.synthetic_clips(tmp_path, 1, 16000)[0]
    y16, _ = read_wav(clip)
    (path,) = bench.hi_rate_clips([clip], [y16], 16000, 44100, tmp_path)
    assert path.parent == tmp_path
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 44100, 2)
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2) / 32768.0
    y, sr = read_wav(path)
    assert sr == 44100 and len(y) == len(frames) == -(-len(y16) * 44100 // 16000)
    np.testing.assert_allclose(y, frames.mean(axis=1), atol=1e-6)
    back = resample(y, 44100, 16000)  # (L + 0.8 L delayed 0.1 ms) / 2: 0.9 x the clip, in band
    k = len(back) // 10
    assert np.corrcoef(back[k:-k], y16[k:-k])[0, 1] > 0.99


def test_resample_quality_sweep_tells_filters_apart(bench):
    """The sine sweep measures what it says: soxr HQ and ser-edge are flat in band; a filter that
    does nothing against aliasing (keep every third sample) has no alias rejection at all."""
    pytest.importorskip("soxr")
    from ser_edge.runtime.audio import resample

    ours, soxr = bench.resample_quality(resample, 48000, 16000), bench.resample_quality(bench.soxr_hq, 48000, 16000)
    naive = bench.resample_quality(lambda y, a, b: y[::3], 48000, 16000)
    for q in (ours, soxr):
        assert q["passband_ripple_db"] < 0.01 and q["alias_rejection_db"] > 80
    assert abs(ours["gain_db_at_0.95_nyquist"] + 6.0) < 0.5  # the cut-off's -6 dB point, as documented
    assert naive["passband_ripple_db"] < 0.01 and naive["alias_rejection_db"] < 1


def test_sections_option(bench):
    s, _, _ = bench.parse_args(["--sections", "resample,cold_start", "--hi-rates", "48000"])
    assert s.sections == ("resample", "end_to_end", "cold_start") and s.hi_rates == (48000,)
    assert bench.parse_args([])[0].sections == bench.SECTIONS
    for bad in (["--sections", "mfcc,nope"], ["--sections", ""], ["--hi-rates", "44.1k"], ["--hi-rates", "100"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


@pytest.mark.realdata
def test_ravdess_clips_spread_over_actors(bench, ravdess_root):
    clips = bench.ravdess_clips(ravdess_root, 6)
    assert len(clips) == 6 and len(set(clips)) == 6
    assert all(c.is_file() and ravdess_root in c.parents for c in clips)
    assert len({c.parent.name for c in clips}) >= 5


def test_missing_model_is_a_clean_error(tmp_path):
    proc = subprocess.run([sys.executable, str(RUN), "--model-dir", str(tmp_path), "--json", str(tmp_path / "o.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "error: no runtime model" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.json").exists()


# ---------------------------------------------------------------------------------------
# Smoke run (exports a tiny model, spawns a few processes)
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_export(random_checkpoint, exported_models):
    """``(checkpoint, dir with its model.onnx / model.int8.onnx / model.npz)``: the session's export."""
    pytest.importorskip("librosa")
    return random_checkpoint("lstm"), exported_models("lstm")


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(bench, tiny_export, random_checkpoint):
    ckpt, model_dir = tiny_export
    models = bench.find_models(model_dir)
    assert bench.check_same_model(ckpt, models)["n_mfcc"] == 40
    other = random_checkpoint("lstm", hidden_size=16, num_layers=1, n_classes=3)
    with pytest.raises(bench.BenchError, match="not the same model"):
        bench.check_same_model(other, models)


@pytest.mark.slow
def test_smoke_run_writes_every_section(tiny_export, tmp_path):
    ckpt, model_dir = tiny_export
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--model-dir", str(model_dir), "--checkpoint", str(ckpt), "--clips", "2",
         "--repeat", "1", "--cold-repeat", "1", "--cold-warmup", "0", "--synthetic", "--json", str(out),
         "--markdown"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())

    assert res["clips"]["source"] == "synthetic" and res["clips"]["n"] == 2
    assert "synthetic speech-like clips" in proc.stdout
    assert "| pipeline |" in proc.stdout and "**Model size on disk**" in proc.stdout

    m = res["mfcc"]
    for impl in ("numpy", "librosa"):
        assert m[impl]["wall_ms"]["median"] > 0 and m[impl]["cpu_ms"]["median"] >= 0
    assert m["ratio_librosa_over_numpy"]["wall"] > 0
    assert m["max_rel_diff"] < 1e-4  # same parameters -> same features

    e2e = {r["pipeline"]: r for r in res["end_to_end"]["pipelines"]}
    assert list(e2e)[0] == "librosa + PyTorch"
    assert {"ser-edge onnxruntime int8", "ser-edge onnxruntime fp32", "ser-edge numpy fp32"} <= set(e2e)
    for r in e2e.values():
        assert r["wall_ms"]["median"] > 0 and r["wall_ms"]["n"] == 2
        assert r["ratio_vs_reference"]["wall"] > 0 and r["rtf"]["wall"] > 0
    for name in ("ser-edge onnxruntime fp32", "ser-edge numpy fp32"):
        # same weights, same features: fp32 agrees with PyTorch eager
        assert e2e[name]["max_abs_logit_diff"] < 1e-3 and e2e[name]["top1_agreement"] == 1.0

    cold = {r["pipeline"]: r for r in res["cold_start"]["pipelines"]}
    assert set(cold) == set(e2e)
    for name, r in cold.items():
        assert r["wall_ms"]["median"] > 0 and r["peak_rss_mb"] > 0 and r["label_matches_warm_run"]
        if r["kind"] == "runtime":
            assert r["heavy_modules"] == [], name  # the runtime never imports torch/librosa/scipy
    assert {"torch", "librosa"} <= set(cold["librosa + PyTorch"]["heavy_modules"])

    sizes = {r["key"]: r for r in res["sizes"]}
    assert {"onnx-fp32", "onnx-int8", "npz", "checkpoint", "state_dict"} <= set(sizes)
    assert all(r["bytes"] > 0 and r["ratio_vs_checkpoint"] > 0 for r in sizes.values())

    rows = {row["rate"]: row for row in res["resample"]["rows"]}
    assert {48000, 44100, 22050, 8000} <= set(rows) and res["resample"]["to_rate"] == 16000
    for rate, row in rows.items():
        assert row["ser-edge"]["cpu_ms"]["median"] >= 0 and row["soxr HQ"]["wall_ms"]["median"] > 0
        assert row["ratio_soxr_over_ser_edge"]["wall"] > 0 and row["rel_rms_diff_vs_soxr"] < 0.1
        assert ("quality" in row) == (rate > 16000)
        for q in row.get("quality", {}).values():
            assert q["passband_ripple_db"] < 0.01 and q["alias_rejection_db"] > 80
    assert "Resampling 3 s of speech to 16 kHz" in proc.stdout

    assert set(res["hi_rate"]) == {"44100", "48000"}
    for hi in res["hi_rate"].values():
        rows = {r["pipeline"]: r for r in hi["pipelines"]}
        assert set(rows) == set(e2e)
        assert all(r["wall_ms"]["median"] > 0 and r["wall_ms"]["n"] == 2 for r in rows.values())
        # each side resamples its own way, so the logits differ a little, never wildly
        assert rows["ser-edge numpy fp32"]["max_abs_logit_diff"] < 1.0
    assert "48 kHz stereo WAVs" in proc.stdout and "WAV → label, 44.1 kHz stereo" in proc.stdout

    stream = {r["model"]: r for r in res["streaming"]["rows"]}
    uni = {"unidirectional LSTM (stream-lstm-ravdess.npz, numpy)",  # the stateful mode's models
           "unidirectional LSTM (stream-lstm-ravdess.int8.onnx, onnxruntime int8)"}
    assert set(stream) == {name for name, r in e2e.items() if r["kind"] == "runtime"} | uni
    assert all(stream[name]["mode"] == "stateful" for name in uni)
    for r in stream.values():
        assert r["window_cpu_ms_per_audio_s"] > 0 and r["mode_cpu_ms_per_audio_s"] > 0 and r["hops"] > 0
    assert "Streaming (listen): CPU per second of audio" in proc.stdout
    before = res["streaming"]["before_issue_10"]  # listen at the commit issue 10 measured, from git
    if "error" not in before:
        assert len(before["rows"]) == 2
        assert all(r["ratio"] > 0 and r["mode_now"] == "stateful" for r in before["rows"])
        assert "listen now vs listen when issue 10 was filed" in proc.stdout
    else:
        assert "cannot read commit" in before["error"]


@pytest.mark.slow
def test_ser_edge_bench_cold_start_memory_is_the_childs_own(tiny_export):
    """``ser-edge bench``'s cold-start child reports its own peak memory, not the parent's: a
    parent holding 256 MiB used to make the child report >= 256 MiB (``ru_maxrss`` survives exec)."""
    from ser_edge.runtime.bench import cold_start, peak_rss_mb

    _, model_dir = tiny_export
    ballast = np.ones(256 * 2**20 // 8)  # touched: resident in this process
    assert peak_rss_mb() >= 256
    report = cold_start(str(model_dir / "model.npz"), backend="numpy", seconds=1.0)
    del ballast
    assert report["heavy_modules_loaded"] == []
    assert 1 < report["peak_rss_mb"] < 200, report["peak_rss_mb"]


def test_feature_section_compares_the_whole_feature_set(bench):
    """For a model with more than MFCC (the shipped one: 40 MFCC + 12 gated chroma, gain
    normalised) the MFCC section also times ``raw_features`` against the usual stack's librosa
    calls, and the two must compute the same features (else the ratio would compare different work)."""
    pytest.importorskip("librosa")
    from ser_edge.runtime.features import FeatureConfig
    from ser_edge.runtime.signals import speechlike

    fc = FeatureConfig(n_fft=1024, win_length=1024, hop_length=512, window="hann", n_mels=64, n_mfcc=40,
                       top_db=40.0, n_chroma=12, gain_norm_db=-25.0).to_dict()
    waves = [speechlike(1.5 + 0.5 * i, 16000, seed=i) * 0.05 for i in range(2)]
    res = bench.bench_mfcc(waves, fc, repeat=1)
    f = res["features"]
    assert f["n_features"] == 52 and f["max_rel_diff"] < 1e-4
    assert f["numpy"]["wall_ms"]["median"] > 0 and f["ratio_librosa_over_numpy"]["wall"] > 0
    title, _, rows = bench.mfcc_table({"mfcc": res, "clock": "cpu"})
    assert any("all 52 model features" in r[0] for r in rows)
    plain = bench.bench_mfcc(waves, FeatureConfig(schema_version=1).to_dict(), repeat=1)
    assert "features" not in plain  # MFCC only: the first rows already say it all


def test_listen_before_runs_a_commit_from_git_beside_this_checkout(tmp_path):
    """``benchmarks/listen_before.py`` lays a commit out as the installed package and streams the
    same audio through it and through this checkout, each in its own process. Checked with HEAD
    as the "old" commit (always present): both sides must then give the same labels; a missing
    commit is a one-line error, not a traceback."""
    import shutil

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    sys.path.insert(0, str(RUN.parent))
    try:
        import listen_before as lb
    finally:
        sys.path.remove(str(RUN.parent))
    from ser_edge.runtime.signals import speechlike

    y = np.concatenate([speechlike(3.0, 16000, seed=s) * 0.1 for s in range(2)]).astype(np.float32)
    audio = tmp_path / "audio.npy"
    np.save(audio, y)
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, new = lb.old_tree("HEAD", tmp_path / "old"), lb.new_tree(tmp_path / "new")
    row = lb.compare(lb.DEFAULT_MODEL, old, new, audio, len(y) / 16000, repeat=1)
    assert row["predictions"][0] == row["predictions"][1] > 0
    assert row["mode_now"] == "stateful" and row["before_ms_per_audio_s"] > 0
    with pytest.raises(SystemExit, match="cannot read commit"):
        lb.old_tree("0" * 40, tmp_path / "new")
