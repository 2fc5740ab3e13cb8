"""Classification metrics (numpy, no scikit-learn), batched inference over MFCC sequences, and
evaluation of a checkpoint on a corpus.

Conventions (the same as scikit-learn's, so numbers are comparable with papers):

* the confusion matrix has true classes on rows and predictions on columns;
* a class nobody predicted has precision 0, a class with no examples has recall 0;
* UAR (unweighted average recall, the standard SER metric) averages recall over the classes
  that *occur* in the evaluated set, so evaluating a 4-emotion subset of an 8-label model is
  not penalised for the 4 absent classes;
* weighted F1 weighs each class's F1 by its support.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ser_edge.runtime.features import FeatureConfig, normalise, pad_batch  # noqa: F401  (pad_batch re-exported)
from ser_edge.runtime.io import atomic_path, atomic_write_json

if TYPE_CHECKING:  # torch and the data layer are imported lazily; type names only here
    import torch

    from ser_edge.checkpoint import Checkpoint
    from ser_edge.data import Utterance

SPLITS = ("test", "val", "train", "all")


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------

def confusion_matrix(y_true: Union[Sequence[int], np.ndarray], y_pred: Union[Sequence[int], np.ndarray],
                     n_classes: int) -> np.ndarray:
    """``(n,), (n,) -> (n_classes, n_classes) int64``; ``cm[t, p]`` counts items of class ``t``
    predicted as ``p``."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"class ids must lie in [0, {n_classes})")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)


def per_class_scores(cm: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``cm (k, k) -> precision, recall, f1 (k,) float64, support (k,) int64``."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted.astype(np.float64))
    recall = _safe_div(tp, support.astype(np.float64))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return precision, recall, f1, support


def accuracy_from_cm(cm: np.ndarray) -> float:
    total = int(cm.sum())
    return float(np.trace(cm)) / total if total else 0.0


def uar_from_cm(cm: np.ndarray) -> float:
    """Unweighted average recall over the classes present (support > 0)."""
    _, recall, _, support = per_class_scores(cm)
    present = support > 0
    return float(recall[present].mean()) if present.any() else 0.0


@dataclass
class Metrics:
    labels: List[str]
    confusion: np.ndarray  # (k, k) int64, rows = true class
    accuracy: float
    uar: float
    macro_f1: float  # over the classes present
    weighted_f1: float
    per_class: Dict[str, Dict[str, float]]  # label -> precision/recall/f1/support
    loss: Optional[float] = None  # mean cross-entropy, when logits were available
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    def report(self) -> str:
        return classification_report(self)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready."""
        d = {
            "labels": list(self.labels),
            "n": self.n,
            "accuracy": self.accuracy,
            "uar": self.uar,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "loss": self.loss,
            "per_class": self.per_class,
            "confusion_matrix": self.confusion.tolist(),
            "report": self.report(),
        }
        d.update(self.extra)
        return d


def metrics_from_cm(cm: np.ndarray, labels: Sequence[str], loss: Optional[float] = None) -> Metrics:
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(labels)} labels")
    precision, recall, f1, support = per_class_scores(cm)
    present = support > 0
    total = support.sum()
    return Metrics(
        labels=list(labels),
        confusion=cm,
        accuracy=accuracy_from_cm(cm),
        uar=uar_from_cm(cm),
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        weighted_f1=float((f1 * support).sum() / total) if total else 0.0,
        per_class={lab: {"precision": float(precision[i]), "recall": float(recall[i]),
                         "f1": float(f1[i]), "support": int(support[i])}
                   for i, lab in enumerate(labels)},
        loss=loss,
    )


def compute_metrics(y_true: Union[Sequence[int], np.ndarray], y_pred: Union[Sequence[int], np.ndarray],
                    labels: Sequence[str],
                    loss: Optional[float] = None) -> Metrics:
    """Metrics for integer class ids ``y_true``/``y_pred`` ``(n,)`` indexing ``labels``."""
    return metrics_from_cm(confusion_matrix(y_true, y_pred, len(labels)), labels, loss)


def classification_report(m: Metrics, digits: int = 3) -> str:
    """Plain-text table in the layout of scikit-learn's ``classification_report``."""
    width = max([len(lab) for lab in m.labels] + [len("weighted avg")])
    head = f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'f1-score':>9}  {'support':>9}"
    lines = [head, ""]
    for lab in m.labels:
        s = m.per_class[lab]
        lines.append(f"{lab:>{width}}  {s['precision']:>9.{digits}f}  {s['recall']:>9.{digits}f}  "
                     f"{s['f1']:>9.{digits}f}  {s['support']:>9d}")
    lines.append("")
    lines.append(f"{'accuracy':>{width}}  {'':>9}  {'':>9}  {m.accuracy:>9.{digits}f}  {m.n:>9d}")
    lines.append(f"{'UAR':>{width}}  {'':>9}  {m.uar:>9.{digits}f}  {'':>9}  {m.n:>9d}")
    lines.append(f"{'macro F1':>{width}}  {'':>9}  {'':>9}  {m.macro_f1:>9.{digits}f}  {m.n:>9d}")
    lines.append(f"{'weighted avg':>{width}}  {'':>9}  {'':>9}  {m.weighted_f1:>9.{digits}f}  {m.n:>9d}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Writing results
# ---------------------------------------------------------------------------------------

def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: str, title: str = "") -> None:
    """Row-normalised confusion matrix (recall per cell) with raw counts, as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.int64)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    k = len(labels)
    size = 1.6 + 0.6 * k
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    try:
        im = ax.imshow(frac, vmin=0.0, vmax=1.0, cmap="Blues")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
        ax.set_xticks(range(k), labels=list(labels), rotation=45, ha="right")
        ax.set_yticks(range(k), labels=list(labels))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if frac[i, j] > 0.5 else "black")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)


def write_metrics(m: Metrics, out_dir: str, stem: str = "metrics", title: str = "") -> Dict[str, str]:
    """``out_dir/{stem}.json`` and ``out_dir/{stem}_confusion.png``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, f"{stem}.json")
    png_path = os.path.join(out_dir, f"{stem}_confusion.png")
    atomic_write_json(json_path, m.to_dict())
    plot_confusion(m.confusion, m.labels, png_path, title=title)
    return {"json": json_path, "png": png_path}


# ---------------------------------------------------------------------------------------
# Inference over feature sequences
# ---------------------------------------------------------------------------------------

def length_batches(lengths: Sequence[int], batch_size: int) -> List[np.ndarray]:
    """Index batches over items sorted by length, so little compute is spent on padding."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def predict_logits(model: torch.nn.Module, feats: Sequence[np.ndarray], batch_size: int = 64,
                   device: Union[str, torch.device] = "cpu") -> np.ndarray:
    """Logits for normalised feature sequences ``[(t_i, n_features)] -> (n, n_classes) float32``.
    Padding-invariant models make batching by length safe; results come back in input order."""
    import torch

    out: Optional[np.ndarray] = None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for idx in length_batches([len(f) for f in feats], batch_size):
                x, lens = pad_batch([feats[i] for i in idx])
                logits = model(torch.from_numpy(x).to(device), torch.from_numpy(lens).to(device)).float().cpu().numpy()
                if out is None:
                    out = np.zeros((len(feats), logits.shape[1]), dtype=np.float32)
                out[idx] = logits
    finally:
        model.train(was_training)
    if out is None:
        raise ValueError("nothing to predict: no feature sequences given")
    return out


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of ``(n, k)`` logits against ``(n,)`` class ids (log-sum-exp stable)."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def evaluate_features(ckpt: Checkpoint, feats: Sequence[np.ndarray], targets: Sequence[int],
                      batch_size: int = 64, device: str = "cpu") -> Metrics:
    """Metrics of a checkpoint on *normalised* features ``[(t_i, n_features)]`` with class ids."""
    model = ckpt.build_model().to(device)
    logits = predict_logits(model, feats, batch_size, device)
    y = np.asarray(targets, dtype=np.int64)
    return compute_metrics(y, logits.argmax(axis=1), ckpt.labels, loss=cross_entropy(logits, y))


# ---------------------------------------------------------------------------------------
# Evaluating a checkpoint on a corpus
# ---------------------------------------------------------------------------------------

def raw_config(cfg: FeatureConfig) -> FeatureConfig:
    """The config without normalisation stats: the key under which raw MFCCs are cached, so
    training and evaluation share one feature cache."""
    return dataclasses.replace(cfg, mean=None, std=None)


def select_split(utts: Sequence[Utterance], ckpt: Checkpoint, split: str) -> List[Utterance]:
    """The utterances of the speakers the checkpoint recorded for ``split`` (or all of them)."""
    from ser_edge.data import DataError

    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {SPLITS}")
    if split == "all":
        return list(utts)
    recorded = (ckpt.extra.get("split") or {}).get(split)
    if recorded is None:
        raise DataError(f"the checkpoint records no {split!r} speakers; evaluate with split 'all'")
    speakers = set(recorded)
    chosen = [u for u in utts if u.speaker in speakers]
    if not chosen:
        raise DataError(f"none of the checkpoint's {split} speakers ({', '.join(sorted(speakers))}) "
                        f"occur in this corpus: is it the corpus the model was trained on?")
    return chosen


def evaluate(checkpoint: Union[str, Checkpoint], utts: Optional[Sequence[Utterance]] = None, *,
             data: Optional[str] = None, root: Optional[str] = None, split: str = "test",
             out_dir: Optional[str] = None, cache_dir: Optional[str] = None, workers: int = 1,
             batch_size: int = 64, device: str = "cpu") -> Metrics:
    """Evaluate a checkpoint on ``utts`` (used as given) or on corpus ``data`` at ``root``,
    restricted to ``split`` ("test" = the test speakers recorded at training time, or
    "val"/"train"/"all"). Utterances whose label the model does not know, and unreadable files,
    are skipped and counted in ``metrics.extra``. With ``out_dir``, writes ``metrics.json`` and
    ``metrics_confusion.png`` there.
    """
    import torch

    from ser_edge.checkpoint import load_checkpoint
    from ser_edge.data import DataError, FeatureStore, load_corpus
    from ser_edge.runtime.errors import SerEdgeError

    if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise SerEdgeError(f"device {device!r} is not available (use cpu or, with CUDA, cuda)")
    ckpt = load_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    if utts is None:
        if not data or not root:
            raise DataError("give either utterances or a corpus name and root")
        utts = select_split(load_corpus(data, os.fspath(root)), ckpt, split)
    index = {lab: i for i, lab in enumerate(ckpt.labels)}
    known = [u for u in utts if u.label in index]
    unknown_labels = sorted({u.label for u in utts if u.label not in index})
    store = FeatureStore(raw_config(ckpt.feature_config), cache_dir)
    kept, skipped = store.load(known, workers=workers)
    if not kept:
        raise DataError(f"no usable utterances to evaluate ({len(utts)} given, {len(utts) - len(known)} "
                        f"with labels the model does not know, {len(skipped)} unreadable)")
    feats = [normalise(store.features(u), ckpt.feature_config) for u in kept]
    m = evaluate_features(ckpt, feats, [index[u.label] for u in kept], batch_size, device)
    m.extra.update({
        "split": split if data else "given",
        "skipped_unknown_label": len(utts) - len(known),
        "unknown_labels": unknown_labels,
        "skipped_unreadable": [{"path": u.path, "reason": why} for u, why in skipped],
        "speakers": sorted({u.speaker for u in kept}),
    })
    if isinstance(checkpoint, (str, os.PathLike)):
        m.extra["checkpoint"] = os.fspath(checkpoint)
    if out_dir:
        write_metrics(m, out_dir, title=f"{split if data else 'evaluation'} (n={m.n}, UAR={m.uar:.3f})")
    return m
