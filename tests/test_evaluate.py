"""Metrics (against hand-computed cases and, when installed, scikit-learn), batched inference,
and evaluating a checkpoint on a corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ser_edge.evaluate import (
    classification_report,
    compute_metrics,
    confusion_matrix,
    cross_entropy,
    length_batches,
    metrics_from_cm,
    pad_batch,
    per_class_scores,
    plot_confusion,
    write_metrics,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# y_true / y_pred of a 3-class case small enough to count by hand:
#   true 0: predicted 0, 0, 1    true 1: predicted 1, 2    true 2: predicted 2
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]
LABELS = ["neutral", "happy", "sad"]


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert cm.dtype == np.int64


def test_confusion_matrix_rejects_bad_ids():
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 3)


def test_metrics_by_hand():
    m = compute_metrics(Y_TRUE, Y_PRED, LABELS)
    # precision = tp / predicted: 2/2, 1/2, 1/2; recall = tp / support: 2/3, 1/2, 1/1
    assert [m.per_class[c]["precision"] for c in LABELS] == pytest.approx([1.0, 0.5, 0.5])
    assert [m.per_class[c]["recall"] for c in LABELS] == pytest.approx([2 / 3, 0.5, 1.0])
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    assert [m.per_class[c]["f1"] for c in LABELS] == pytest.approx(f1)
    assert [m.per_class[c]["support"] for c in LABELS] == [3, 2, 1]
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.uar == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert m.macro_f1 == pytest.approx(sum(f1) / 3)
    assert m.weighted_f1 == pytest.approx((3 * f1[0] + 2 * f1[1] + 1 * f1[2]) / 6)
    assert m.n == 6


def test_zero_division_and_absent_classes():
    # class 2 never occurs and is never predicted; class 1 occurs but is never predicted
    m = compute_metrics([0, 0, 1], [0, 0, 0], ["a", "b", "c"])
    assert m.per_class["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m.per_class["c"]["support"] == 0
    assert m.per_class["a"]["precision"] == pytest.approx(2 / 3)
    # UAR averages over the classes present (a: 1.0, b: 0.0), not over all three
    assert m.uar == pytest.approx(0.5)
    assert m.accuracy == pytest.approx(2 / 3)
    assert np.isfinite(m.weighted_f1)


def test_empty_metrics_are_zero_not_nan():
    m = compute_metrics([], [], ["a", "b"])
    assert (m.accuracy, m.uar, m.weighted_f1, m.n) == (0.0, 0.0, 0.0, 0)


def test_metrics_match_sklearn_on_random_cases():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for k in (2, 4, 8):
        for _ in range(5):
            n = int(rng.integers(5, 60))
            t = rng.integers(0, k, n)
            p = np.where(rng.random(n) < 0.5, t, rng.integers(0, k, n))
            m = compute_metrics(t, p, [str(i) for i in range(k)])
            present = np.unique(t)
            assert m.accuracy == pytest.approx(skm.accuracy_score(t, p))
            assert m.uar == pytest.approx(skm.recall_score(t, p, labels=present, average="macro", zero_division=0))
            assert m.weighted_f1 == pytest.approx(skm.f1_score(t, p, labels=range(k), average="weighted",
                                                               zero_division=0))
            prec, rec, f1, sup = skm.precision_recall_fscore_support(t, p, labels=range(k), zero_division=0)
            ours = per_class_scores(m.confusion)
            for a, b in zip(ours, (prec, rec, f1, sup)):
                np.testing.assert_allclose(a, b)
            np.testing.assert_array_equal(m.confusion, skm.confusion_matrix(t, p, labels=range(k)))


def test_report_lists_every_class_and_the_summary():
    m = compute_metrics(Y_TRUE, Y_PRED, LABELS)
    text = classification_report(m)
    for lab in LABELS:
        assert lab in text
    assert "UAR" in text and "weighted avg" in text
    assert f"{m.uar:.3f}" in text and f"{m.weighted_f1:.3f}" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("neutral"))
    assert line.split()[1:] == ["1.000", "0.667", "0.800", "3"]


def test_metrics_from_cm_checks_shape():
    with pytest.raises(ValueError):
        metrics_from_cm(np.zeros((2, 2)), ["a", "b", "c"])


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((7, 4)) * 5).astype(np.float32)
    y = rng.integers(0, 4, 7)
    ref = torch.nn.functional.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(y))
    assert cross_entropy(logits, y) == pytest.approx(float(ref), rel=1e-9)


def test_pad_batch_and_length_batches():
    feats = [np.full((n, 3), n, dtype=np.float32) for n in (5, 2, 7)]
    x, lens = pad_batch(feats)
    assert x.shape == (3, 7, 3) and x.dtype == np.float32
    assert lens.tolist() == [5, 2, 7]
    assert np.all(x[1, :2] == 2) and np.all(x[1, 2:] == 0)
    batches = length_batches([5, 2, 7, 1], 2)
    assert [b.tolist() for b in batches] == [[3, 1], [0, 2]]
    with pytest.raises(ValueError):
        pad_batch([np.zeros((0, 3), np.float32)])


def test_predict_logits_batched_equals_one_by_one(random_checkpoint):
    torch = pytest.importorskip("torch")
    from ser_edge.checkpoint import load_checkpoint
    from ser_edge.evaluate import predict_logits

    for arch in ("lstm", "attn_bilstm"):
        model = load_checkpoint(str(random_checkpoint(arch=arch, hidden_size=16))).build_model()
        rng = np.random.default_rng(2)
        feats = [rng.standard_normal((int(n), 40)).astype(np.float32) for n in rng.integers(3, 40, 9)]
        batched = predict_logits(model, feats, batch_size=4)
        with torch.no_grad():
            single = np.stack([model(torch.from_numpy(f[None]), torch.tensor([len(f)]))[0].numpy() for f in feats])
        np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)


def test_write_metrics_json_and_png(tmp_path):
    m = compute_metrics(Y_TRUE, Y_PRED, LABELS)
    m.extra["split"] = "test"
    paths = write_metrics(m, str(tmp_path / "out"), title="t")
    d = json.loads(open(paths["json"]).read())
    assert d["uar"] == pytest.approx(m.uar) and d["split"] == "test"
    assert d["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert d["per_class"]["neutral"]["support"] == 3
    assert open(paths["png"], "rb").read(8) == PNG_MAGIC
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_plot_confusion_handles_empty_rows(tmp_path):
    path = tmp_path / "cm.png"
    plot_confusion(np.array([[0, 0], [1, 3]]), ["a", "b"], str(path))
    assert path.read_bytes()[:8] == PNG_MAGIC


# ---------------------------------------------------------------------------------------
# evaluate(): a checkpoint on a corpus
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from ser_edge.data import synth_corpus

    root = tmp_path_factory.mktemp("synth_eval")
    synth_corpus(str(root), n_speakers=3, per_class=2, labels=("neutral", "happy", "sad", "angry"), seed=1)
    return str(root)


@pytest.fixture(scope="module")
def split_checkpoint(random_checkpoint, tiny_corpus, tmp_path_factory):
    """The random 4-class checkpoint with a recorded split: test = synth03, val = synth02."""
    from ser_edge.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(str(random_checkpoint(arch="lstm", hidden_size=16, n_classes=4)))
    ckpt.labels = ["neutral", "happy", "sad", "angry"]
    ckpt.extra["split"] = {"train": ["synth01"], "val": ["synth02"], "test": ["synth03"]}
    path = tmp_path_factory.mktemp("ckpt_split") / "best.pt"
    save_checkpoint(str(path), ckpt)
    return str(path)


def test_evaluate_on_recorded_test_speakers(split_checkpoint, tiny_corpus, tmp_path):
    pytest.importorskip("torch")
    from ser_edge.evaluate import evaluate

    out = tmp_path / "eval"
    m = evaluate(split_checkpoint, data="manifest", root=tiny_corpus, out_dir=str(out))
    assert m.n == 8  # one speaker x 4 labels x 2 clips
    assert m.extra["speakers"] == ["synth03"]
    assert m.confusion.sum(axis=1).tolist() == [2, 2, 2, 2]
    d = json.loads((out / "metrics.json").read_text())
    assert d["n"] == 8 and d["split"] == "test" and d["checkpoint"] == split_checkpoint
    assert (out / "metrics_confusion.png").read_bytes()[:8] == PNG_MAGIC
    everything = evaluate(split_checkpoint, data="manifest", root=tiny_corpus, split="all")
    assert everything.n == 24


def test_evaluate_given_utterances_skips_unknown_labels_and_bad_files(split_checkpoint, tiny_corpus, tmp_path):
    pytest.importorskip("torch")
    from ser_edge.data import Utterance, load_corpus
    from ser_edge.evaluate import evaluate

    utts = list(load_corpus("manifest", tiny_corpus))[:4]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    utts += [Utterance(str(bad), "sad", "x", "manifest"), Utterance(utts[0].path, "bored", "x", "manifest")]
    m = evaluate(split_checkpoint, utts)
    assert m.n == 4
    assert m.extra["skipped_unknown_label"] == 1 and m.extra["unknown_labels"] == ["bored"]
    assert [s["path"] for s in m.extra["skipped_unreadable"]] == [str(bad)]


def test_evaluate_errors_are_user_errors(split_checkpoint, random_checkpoint, tiny_corpus, tmp_path):
    pytest.importorskip("torch")
    from ser_edge.checkpoint import CheckpointError
    from ser_edge.data import DataError
    from ser_edge.evaluate import evaluate

    with pytest.raises(DataError, match="records no 'test' speakers"):
        evaluate(str(random_checkpoint(arch="lstm", hidden_size=16, n_classes=4)), data="manifest", root=tiny_corpus)
    with pytest.raises(DataError, match="unknown split"):
        evaluate(split_checkpoint, data="manifest", root=tiny_corpus, split="dev")
    with pytest.raises(DataError):
        evaluate(split_checkpoint, data="manifest", root=str(tmp_path / "missing"))
    with pytest.raises(DataError):
        evaluate(split_checkpoint, data="nosuchcorpus", root=tiny_corpus)
    with pytest.raises(CheckpointError):
        evaluate(str(tmp_path / "nope.pt"), data="manifest", root=tiny_corpus)
