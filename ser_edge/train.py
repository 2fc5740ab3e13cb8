"""Training loop: corpus -> speaker-disjoint split -> cached MFCCs -> train-only normalisation ->
LSTM classifier -> early stopping on validation -> best checkpoint -> test metrics.

Determinism and resumption are one design decision: every random draw is derived from
``(seed, epoch, ...)`` rather than from a generator that runs through the whole job. Batch order
comes from ``(seed, epoch)``, each item's augmentation and crop from ``(seed, epoch, item)``, and
the dropout masks of a step from ``(seed, epoch, step, rank)``. So two runs with one seed give
identical weights, and a run resumed from ``last.pt`` (saved at every epoch end, every
``checkpoint_every`` steps, and on Ctrl-C) replays the interrupted epoch from the saved step and
reaches the *same* weights as an uninterrupted run: no RNG state needs to be saved at all, only
model, optimiser, scheduler, early-stopping state and the epoch's running sums.

Outputs in ``out_dir``: ``best.pt`` (best validation score; never chosen on test), ``last.pt``
(resume state), ``history.json``, and the best model's test-set ``metrics.json`` +
``metrics_confusion.png``.

Under ``torchrun`` (see :mod:`ser_edge.distributed`) each rank extracts features for a shard of
the corpus, the shards are gathered, every epoch's items are sharded across ranks like
``DistributedSampler`` does, gradients are averaged by ``DistributedDataParallel``, validation
sums are all-reduced, and rank 0 alone writes files.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ser_edge import distributed as D
from ser_edge.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ser_edge.data import CANONICAL_LABELS, DataError, FeatureStore, Utterance, check_disjoint, load_corpus, speaker_split
from ser_edge.evaluate import Metrics, evaluate_features, metrics_from_cm, pad_batch, predict_logits, write_metrics
from ser_edge.models import ARCHITECTURES, ModelConfig, build_model, count_parameters
from ser_edge.runtime.audio import resample
from ser_edge.runtime.errors import SerEdgeError
from ser_edge.runtime.features import FeatureConfig, RunningStats, mfcc, normalise
from ser_edge.runtime.io import atomic_write_json

#: Items sorted by length within groups of this many batches (less padding, still shuffled).
BUCKET_BATCHES = 16
#: Resampling filter half-length for speed perturbation (see augment_waveform).
AUGMENT_TAPS = 8
#: TrainConfig fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = frozenset({"epochs", "resume", "workers", "cache_dir", "progress", "device",
                               "checkpoint_every", "out_dir", "root"})

# Sub-streams of the derived randomness (see the module docstring).
_STREAM_ORDER, _STREAM_ITEM, _STREAM_STEP = 0, 1, 2


class TrainError(SerEdgeError, ValueError):
    """A training configuration or run directory that cannot be used."""


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in every checkpoint it writes."""

    data: str = "ravdess"  # corpus name, see ser_edge.data.CORPORA
    root: str = ""  # corpus directory (or manifest file)
    out_dir: str = "runs/default"
    labels: Optional[Tuple[str, ...]] = None  # train on this label subset (None = all found)
    # model
    arch: str = "lstm"
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.2
    n_mfcc: int = 40
    # optimisation
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    class_weights: bool = True  # inverse class frequency on the training split
    patience: int = 5  # epochs without validation improvement before stopping
    monitor: str = "uar"  # validation metric for best checkpoint + early stopping: "uar" | "loss"
    lr_patience: int = 2  # ReduceLROnPlateau on validation loss
    lr_factor: float = 0.5
    # data
    augment: bool = True
    augment_prob: float = 0.5  # fraction of training items augmented each epoch
    noise_snr_db: Tuple[float, float] = (10.0, 30.0)
    speed_range: Tuple[float, float] = (0.9, 1.1)
    max_frames: Optional[int] = 400  # random crop of longer training clips (10 ms frames)
    bucket: bool = True  # batch items of similar length together
    seed: int = 0
    ratios: Tuple[float, float, float] = (0.8, 0.1, 0.1)  # speaker shares train/val/test
    test_speakers: Optional[Tuple[str, ...]] = None
    val_speakers: Optional[Tuple[str, ...]] = None
    # infrastructure
    cache_dir: Optional[str] = None
    workers: int = 1
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    checkpoint_every: int = 0  # also save last.pt every N steps inside an epoch (0 = epoch ends)
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("labels", "test_speakers", "val_speakers"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [v for v in value.split(",") if v]
            if value is not None:
                setattr(self, name, tuple(value))
        for name in ("noise_snr_db", "speed_range", "ratios"):
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))

    def validate(self) -> None:
        """Raise :class:`TrainError` for values no run could use."""
        problems = []
        if self.arch not in ARCHITECTURES:
            problems.append(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        for name in ("hidden", "layers", "epochs", "batch_size", "patience", "workers", "n_mfcc"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append("dropout must be in [0, 1)")
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append("label_smoothing must be in [0, 1)")
        if not 0.0 <= self.augment_prob <= 1.0:
            problems.append("augment_prob must be in [0, 1]")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip <= 0:
            problems.append("lr and grad_clip must be positive, weight_decay non-negative")
        if self.monitor not in ("uar", "loss"):
            problems.append("monitor must be 'uar' or 'loss'")
        lo, hi = self.speed_range
        if not 0.5 <= lo <= hi <= 2.0:
            problems.append("speed_range must satisfy 0.5 <= low <= high <= 2")
        if self.noise_snr_db[0] > self.noise_snr_db[1]:
            problems.append("noise_snr_db must be (low, high)")
        if self.max_frames is not None and self.max_frames < 10:
            problems.append("max_frames must be >= 10 (or None for no crop)")
        if self.checkpoint_every < 0:
            problems.append("checkpoint_every must be >= 0")
        if not self.root:
            problems.append("root (the corpus location) is required")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device must be auto, cpu or cuda, got {self.device!r}")
        elif self.device == "cuda" and not torch.cuda.is_available():
            problems.append("device 'cuda' requested but CUDA is not available")
        if problems:
            raise TrainError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def feature_config(self) -> FeatureConfig:
        """Raw (unfitted) feature config; stats are fitted on the training split."""
        return FeatureConfig(n_mfcc=self.n_mfcc, n_mels=max(40, self.n_mfcc))


@dataclass
class TrainResult:
    out_dir: str
    best_path: str
    last_path: str
    labels: List[str]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    best_val: Dict[str, float]
    history: List[Dict[str, Any]]
    speakers: Dict[str, List[str]]
    skipped: List[Tuple[str, str]]  # (path, reason) of unreadable files
    n_parameters: int
    test: Optional[Metrics] = None  # None on ranks > 0 or without test speakers
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------
# Data preparation
# ---------------------------------------------------------------------------------------

@dataclass
class SplitData:
    """One split's usable items: normalised features ``[(t_i, n_mfcc) float32]`` and class ids."""

    utts: List[Utterance]
    feats: List[np.ndarray]
    targets: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.utts)


@dataclass
class Prepared:
    labels: List[str]
    raw_cfg: FeatureConfig
    cfg: FeatureConfig  # with training-set stats
    train: SplitData
    val: SplitData
    test: SplitData
    speakers: Dict[str, List[str]]
    skipped: List[Tuple[str, str]]
    store: FeatureStore


def choose_labels(utts: Sequence[Utterance], wanted: Optional[Sequence[str]]) -> List[str]:
    """Class list (index = class id): ``wanted`` as given, or every label found in canonical
    order (unknown extra labels after, sorted)."""
    present = {u.label for u in utts}
    if wanted:
        missing = [lab for lab in wanted if lab not in present]
        if missing:
            raise DataError(f"labels not found in the corpus: {', '.join(missing)} "
                            f"(found: {', '.join(sorted(present))})")
        return list(dict.fromkeys(wanted))
    return [lab for lab in CANONICAL_LABELS if lab in present] + sorted(present - set(CANONICAL_LABELS))


def load_features(store: FeatureStore, utts: Sequence[Utterance], workers: int,
                  env: D.DistEnv) -> Tuple[Dict[str, np.ndarray], List[Tuple[str, str]]]:
    """Raw MFCCs by path for every readable utterance, plus ``(path, reason)`` for the rest.
    Each rank extracts a shard (with ``workers`` processes) and the shards are gathered."""
    kept, skipped = store.load(list(utts)[env.rank::env.world_size], workers=workers)
    local = ({u.path: store.features(u) for u in kept}, [(u.path, why) for u, why in skipped])
    feats: Dict[str, np.ndarray] = {}
    bad: List[Tuple[str, str]] = []
    for part_feats, part_bad in D.all_gather_objects(env, local):
        feats.update(part_feats)
        bad.extend(part_bad)
    return feats, sorted(set(bad))


def prepare(cfg: TrainConfig, env: D.DistEnv, log: Callable[[str], None]) -> Prepared:
    """Load, split, extract and normalise. Raises :class:`DataError` for unusable data."""
    utts = load_corpus(cfg.data, os.fspath(cfg.root))
    labels = choose_labels(utts, cfg.labels)
    wanted = set(labels)
    utts = [u for u in utts if u.label in wanted]
    split = speaker_split(utts, cfg.ratios, cfg.seed, test_speakers=cfg.test_speakers,
                          val_speakers=cfg.val_speakers)
    check_disjoint(split)
    if not split.train or not split.val:
        raise DataError(f"need training and validation speakers, got {split.summary()}")
    raw_cfg = cfg.feature_config()
    store = FeatureStore(raw_cfg, cfg.cache_dir)
    raw, skipped = load_features(store, utts, cfg.workers, env)
    for path, why in skipped:
        log(f"skipping unreadable file: {why}")

    index = {lab: i for i, lab in enumerate(labels)}
    train_utts = [u for u in split.train if u.path in raw]
    stats = RunningStats()  # fitted on the training split only: val/test must stay unseen
    for u in train_utts:
        stats.update(raw[u.path])
    try:
        fcfg = raw_cfg.with_stats(*stats.result())
    except ValueError:
        raise DataError("no readable training utterances") from None

    def part(us: Sequence[Utterance]) -> SplitData:
        kept = [u for u in us if u.path in raw]
        return SplitData(kept, [normalise(raw[u.path], fcfg) for u in kept],
                         np.array([index[u.label] for u in kept], dtype=np.int64))

    data = Prepared(labels, raw_cfg, fcfg, part(split.train), part(split.val), part(split.test),
                    split.speakers(), skipped, store)
    empty = [lab for lab, n in zip(labels, np.bincount(data.train.targets, minlength=len(labels))) if n == 0]
    if empty:
        raise DataError(f"no training utterances for label(s) {', '.join(empty)}; "
                        f"choose a label subset or other speakers")
    if not len(data.val):
        raise DataError("no readable validation utterances")
    return data


def class_weights(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``(n_classes,) float32``, 1 on average over items:
    ``w_c = n / (k * n_c)``."""
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    return (len(targets) / (n_classes * np.maximum(counts, 1))).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Per-epoch sampling and augmentation (all randomness derived from the seed)
# ---------------------------------------------------------------------------------------

def derived_seed(*keys: int) -> int:
    """A 32-bit seed that depends on every key (numpy SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world: int = 1, bucket: bool = True) -> List[np.ndarray]:
    """This rank's batches of item indices for ``epoch``.

    A seeded permutation is padded (by repetition) to a multiple of ``world`` and dealt out
    like ``DistributedSampler``, so every rank runs the same number of steps. With ``bucket``,
    items are sorted by length inside groups of ``BUCKET_BATCHES`` batches and the batches
    shuffled, so padding stays small while batch composition still changes every epoch.
    """
    rng = np.random.default_rng([seed, epoch, _STREAM_ORDER])
    order = rng.permutation(len(lengths))
    if world > 1:
        order = np.resize(order, math.ceil(len(order) / world) * world)[rank::world]
    if bucket:
        group = batch_size * BUCKET_BATCHES
        order = np.concatenate([g[np.argsort(lengths[g], kind="stable")]
                                for g in (order[i:i + group] for i in range(0, len(order), group))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def augment_waveform(y: np.ndarray, sample_rate: int, rng: np.random.Generator,
                     snr_db: Tuple[float, float], speed_range: Tuple[float, float]) -> np.ndarray:
    """Speed perturbation then additive white noise. ``(n,) -> (~n / speed,) float32``.

    Speed is quantised to 0.01 so the resampling ratio stays a small fraction (cheap
    polyphase path in :func:`resample`); a clip resampled from ``sr * speed`` to ``sr`` plays
    ``speed`` times faster (tempo and pitch, as in Kaldi-style speed perturbation).
    """
    speed = round(float(rng.uniform(*speed_range)), 2)
    if speed != 1.0:
        # 8 taps a side (vs 32 for real resampling): ~40 dB stop band is plenty for an
        # augmentation and ~10x cheaper, so augmenting costs about what the MFCC does.
        y = resample(y, int(round(sample_rate * speed)), sample_rate, taps_per_side=AUGMENT_TAPS)
    power = float(np.mean(np.square(y, dtype=np.float64)))
    snr = float(rng.uniform(*snr_db))
    noise = rng.standard_normal(len(y)) * math.sqrt(power / 10.0 ** (snr / 10.0))
    return (y + noise).astype(np.float32)


def random_crop(feats: np.ndarray, max_frames: Optional[int], rng: np.random.Generator) -> np.ndarray:
    """At most ``max_frames`` consecutive frames at a random offset. ``(t, d) -> (min(t, max), d)``."""
    if max_frames is None or len(feats) <= max_frames:
        return feats
    start = int(rng.integers(0, len(feats) - max_frames + 1))
    return feats[start:start + max_frames]


def training_item(data: Prepared, i: int, epoch: int, cfg: TrainConfig) -> np.ndarray:
    """Training features of item ``i`` in ``epoch``: clean (cached) or augmented (recomputed
    with the one numpy MFCC), then randomly cropped. ``-> (t, n_mfcc) float32``."""
    rng = np.random.default_rng([cfg.seed, epoch, _STREAM_ITEM, i])
    feats = data.train.feats[i]
    if cfg.augment and rng.random() < cfg.augment_prob:
        y = data.store.waveform(data.train.utts[i])
        y = augment_waveform(y, data.raw_cfg.sample_rate, rng, cfg.noise_snr_db, cfg.speed_range)
        feats = normalise(mfcc(y, data.raw_cfg), data.cfg)
    return random_crop(feats, cfg.max_frames, rng)


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------

def validate(model: nn.Module, part: SplitData, labels: Sequence[str], env: D.DistEnv,
             batch_size: int) -> Metrics:
    """Metrics on a split; each rank scores a shard and the confusion matrix and loss sum are
    all-reduced, so every rank sees the same numbers and takes the same decisions."""
    k = len(labels)
    idx = np.arange(len(part))[env.rank::env.world_size]
    cm = np.zeros((k, k), dtype=np.int64)
    loss_sum = 0.0
    if len(idx):
        logits = predict_logits(model, [part.feats[i] for i in idx], batch_size * 2, env.device)
        y = part.targets[idx]
        cm = np.bincount(y * k + logits.argmax(axis=1), minlength=k * k).reshape(k, k)
        loss_sum = float(nn.functional.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(y),
                                                     reduction="sum"))
    packed = D.all_reduce_sum(env, torch.from_numpy(np.concatenate([cm.ravel().astype(np.float64), [loss_sum]])))
    cm = packed[:-1].numpy().round().astype(np.int64).reshape(k, k)
    return metrics_from_cm(cm, labels, loss=float(packed[-1]) / max(1, int(cm.sum())))


# ---------------------------------------------------------------------------------------
# Run state and checkpoints
# ---------------------------------------------------------------------------------------

@dataclass
class RunState:
    """What ``last.pt`` must hold besides the weights to continue exactly."""

    epoch: int = 1  # the epoch in progress (1-based)
    step: int = 0  # steps of ``epoch`` already done
    sums: Dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "correct": 0.0, "n": 0.0, "seconds": 0.0})
    best: Optional[List[float]] = None  # monitor score, larger is better (see ``score``)
    best_epoch: int = 0
    bad_epochs: int = 0
    history: List[Dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    stopped_early: bool = False

    def improved(self, score: List[float]) -> bool:
        return self.best is None or tuple(score) > tuple(self.best)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunState":
        return cls(**d)


def score(val: Metrics, monitor: str) -> List[float]:
    """Validation score, larger is better. UAR ties (common on small validation sets, where
    UAR moves in coarse steps) are broken by the lower validation loss."""
    return [val.uar, -float(val.loss)] if monitor == "uar" else [-float(val.loss)]


def make_checkpoint(model: nn.Module, mcfg: ModelConfig, data: Prepared, cfg: TrainConfig,
                    extra: Dict[str, Any]) -> Checkpoint:
    base = {"train_config": cfg.to_dict(), "split": data.speakers,
            "n_items": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
            "skipped": [list(s) for s in data.skipped]}
    base.update(extra)
    return Checkpoint(mcfg, data.cfg, list(data.labels), unwrap(model).state_dict(), base)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def check_resumable(saved: Dict[str, Any], cfg: TrainConfig) -> None:
    """Refuse to continue a run with different settings (the result would be neither run)."""
    now = cfg.to_dict()
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
    if changed:
        raise TrainError("cannot resume: settings differ from the interrupted run: "
                         + ", ".join(f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in changed))


# ---------------------------------------------------------------------------------------
# Progress and logging (rank 0, stderr)
# ---------------------------------------------------------------------------------------

class Progress:
    """A self-rewriting ``epoch 3/30 [=====     ] 12/40 loss 1.234`` line on a terminal;
    silent when stderr is redirected (epoch summaries are logged separately)."""

    def __init__(self, enabled: bool, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and getattr(self.stream, "isatty", lambda: False)()
        self._last = 0.0

    def update(self, epoch: int, epochs: int, step: int, steps: int, loss: float) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.2 and step < steps):
            return
        self._last = now
        width = 24
        filled = int(width * step / max(1, steps))
        self.stream.write(f"\repoch {epoch}/{epochs} [{'=' * filled}{' ' * (width - filled)}] "
                          f"{step}/{steps} loss {loss:.3f}")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------

def train(cfg: TrainConfig, on_step: Optional[Callable[[int, int], None]] = None,
          log: Optional[Callable[[str], None]] = None) -> TrainResult:
    """Train, select on validation, evaluate the best model on test. See the module docstring.

    ``on_step(epoch, step)`` runs after every optimiser step (for tests and tooling); a
    ``KeyboardInterrupt`` it raises, like Ctrl-C, saves ``last.pt`` at that step first.
    Raises :class:`DataError` / :class:`TrainError` for unusable data or settings.
    """
    cfg.validate()
    t_start = time.monotonic()
    env = D.setup(cfg.device)
    # Gradients reaching early time steps of a long sequence decay into float32 denormals, which
    # make the CPU LSTM backward ~25x slower (seconds per batch); flushing them to zero changes
    # nothing measurable.
    torch.set_flush_denormal(True)
    try:
        trainer = Trainer(cfg, env, log)
        trainer.fit(on_step)
        return trainer.finish(t_start)
    finally:
        torch.set_flush_denormal(False)  # back to torch's default for the rest of the process
        D.teardown(env)


class Trainer:
    """One run's data, model, optimiser and :class:`RunState`; methods are the loop's stages."""

    def __init__(self, cfg: TrainConfig, env: D.DistEnv, log: Optional[Callable[[str], None]] = None) -> None:
        self.cfg, self.env = cfg, env
        quiet: Callable[[str], None] = lambda _m: None  # noqa: E731
        self.say = (log or (_stderr_log if cfg.progress else quiet)) if env.is_main else quiet
        self.out = os.fspath(cfg.out_dir)
        self.best_path, self.last_path = os.path.join(self.out, "best.pt"), os.path.join(self.out, "last.pt")
        if not cfg.resume and (os.path.exists(self.last_path) or os.path.exists(self.best_path)):
            raise TrainError(f"{self.out} already holds a training run; resume it (--resume) "
                             f"or choose another output directory")
        self.data = data = prepare(cfg, env, self.say)
        spk = data.speakers
        self.say(f"data: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test utterances; "
                 f"speakers {len(spk['train'])}/{len(spk['val'])}/{len(spk['test'])}; labels {', '.join(data.labels)}"
                 + (f"; {len(data.skipped)} unreadable skipped" if data.skipped else ""))
        self.mcfg = ModelConfig(arch=cfg.arch, n_features=cfg.n_mfcc, n_classes=len(data.labels),
                                hidden_size=cfg.hidden, num_layers=cfg.layers, dropout=cfg.dropout)
        torch.manual_seed(cfg.seed)
        self.model: nn.Module = build_model(self.mcfg).to(env.device)
        self.n_parameters = count_parameters(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience)
        self.state = RunState()
        if cfg.resume:
            self._resume()
        if env.distributed:
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
        self.weights = class_weights(data.train.targets, len(data.labels)) if cfg.class_weights else None
        self.criterion = nn.CrossEntropyLoss(
            weight=None if self.weights is None else torch.from_numpy(self.weights).to(env.device),
            label_smoothing=cfg.label_smoothing)
        self.say(f"model: {cfg.arch} hidden {cfg.hidden} x {cfg.layers} layers, {self.n_parameters} parameters, "
                 f"device {env.device}" + (f", {env.world_size} ranks" if env.distributed else ""))
        self.progress = Progress(cfg.progress and env.is_main)

    # -- state in and out -----------------------------------------------------------------
    def _resume(self) -> None:
        if not os.path.exists(self.last_path):
            self.say(f"nothing to resume in {self.out}; starting from scratch")
            return
        last = load_checkpoint(self.last_path)
        check_resumable(last.extra.get("train_config", {}), self.cfg)
        if last.extra.get("split") != self.data.speakers:
            raise TrainError("cannot resume: the speaker split differs from the interrupted run's "
                             "(was the corpus changed?)")
        self.model.load_state_dict(last.state_dict)
        self.optimizer.load_state_dict(last.extra["optimizer"])
        self.scheduler.load_state_dict(last.extra["scheduler"])
        self.state = RunState.from_dict(last.extra["state"])
        # A run that stopped at its epoch limit continues when given more epochs; one that
        # stopped early stays stopped.
        self.state.finished = self.state.stopped_early or self.state.epoch > self.cfg.epochs
        self.say(f"resuming {self.last_path}: epoch {self.state.epoch}, step {self.state.step}")

    def _checkpoint(self, extra: Dict[str, Any]) -> Checkpoint:
        extra = dict(extra, class_weights=None if self.weights is None else self.weights.tolist())
        return make_checkpoint(self.model, self.mcfg, self.data, self.cfg, extra)

    def save_last(self) -> None:
        if self.env.is_main:
            save_checkpoint(self.last_path, self._checkpoint({
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "state": self.state.to_dict(), "rng": "derived from (seed, epoch, step); nothing to restore"}))

    def save_best(self, record: Dict[str, Any]) -> None:
        if self.env.is_main:
            save_checkpoint(self.best_path, self._checkpoint({
                "epoch": record["epoch"], "val": {k: v for k, v in record.items() if k.startswith("val_")},
                "monitor": self.cfg.monitor, "history": self.state.history}))

    def write_history(self) -> None:
        if self.env.is_main:
            atomic_write_json(os.path.join(self.out, "history.json"), {
                "config": self.cfg.to_dict(), "labels": self.data.labels, "speakers": self.data.speakers,
                "best_epoch": self.state.best_epoch, "stopped_early": self.state.stopped_early,
                "epochs": self.state.history})

    # -- the loop -------------------------------------------------------------------------
    def fit(self, on_step: Optional[Callable[[int, int], None]] = None) -> None:
        while not self.state.finished and self.state.epoch <= self.cfg.epochs:
            t0 = time.monotonic()
            self.run_epoch(on_step)
            self.end_epoch(t0)
            D.barrier(self.env)  # nobody races ahead while rank 0 writes

    def make_batch(self, idx: np.ndarray, epoch: int) -> Tuple[np.ndarray, np.ndarray]:
        """Padded training batch ``((b, t, n_mfcc) float32, (b,) int64)``; a pure function of
        ``(seed, epoch, idx)``, so it can be built ahead in another thread."""
        return pad_batch([training_item(self.data, int(i), epoch, self.cfg) for i in idx])

    def train_step(self, batch: Tuple[np.ndarray, np.ndarray], idx: np.ndarray, epoch: int,
                   step: int) -> Tuple[float, float]:
        """One optimiser step on items ``idx``. ``-> (summed loss, correct predictions)``."""
        cfg, dev = self.cfg, self.env.device
        x, lens = batch
        y = torch.from_numpy(self.data.train.targets[idx]).to(dev)
        torch.manual_seed(derived_seed(cfg.seed, epoch, _STREAM_STEP, step, self.env.rank))  # dropout masks
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(torch.from_numpy(x).to(dev), torch.from_numpy(lens).to(dev))
        loss = self.criterion(logits, y)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self._updating = True
        self.optimizer.step()
        return float(loss.detach()) * len(idx), float((logits.detach().argmax(dim=1) == y).sum())

    def run_epoch(self, on_step: Optional[Callable[[int, int], None]]) -> None:
        """Steps of ``state.epoch`` from ``state.step`` on (a resumed epoch skips done steps)."""
        cfg, st = self.cfg, self.state
        lengths = np.array([len(f) for f in self.data.train.feats])
        batches = epoch_batches(lengths, cfg.batch_size, cfg.seed, st.epoch, self.env.rank,
                                self.env.world_size, cfg.bucket)
        self.model.train()
        t0 = time.monotonic()
        self._updating = False  # True while parameters change: not a consistent state to save
        # One thread builds the next batch (augmentation + MFCC in numpy, which releases the
        # GIL) while torch trains on this one.
        pool = ThreadPoolExecutor(max_workers=1)
        steps = range(st.step, len(batches))
        ahead = pool.submit(self.make_batch, batches[steps[0]], st.epoch) if len(steps) else None
        try:
            for step in steps:
                batch = ahead.result()
                if step + 1 < len(batches):
                    ahead = pool.submit(self.make_batch, batches[step + 1], st.epoch)
                loss_sum, correct = self.train_step(batch, batches[step], st.epoch, step)
                st.sums["loss"] += loss_sum
                st.sums["correct"] += correct
                st.sums["n"] += len(batches[step])
                st.step = step + 1
                self._updating = False
                self.progress.update(st.epoch, cfg.epochs, st.step, len(batches), st.sums["loss"] / st.sums["n"])
                if cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0 and st.step < len(batches):
                    st.sums["seconds"] += time.monotonic() - t0
                    t0 = time.monotonic()
                    self.save_last()
                if on_step is not None:
                    on_step(st.epoch, st.step)
        except KeyboardInterrupt:
            self.progress.clear()
            # An interrupt inside the optimiser step leaves half-updated weights, and peers of a
            # distributed run may be mid-collective: then the previous last.pt stays the resume point.
            if not self.env.distributed and not self._updating:
                st.sums["seconds"] += time.monotonic() - t0
                self.save_last()
                self.say(f"interrupted: saved {self.last_path} at epoch {st.epoch}, step {st.step}; "
                         f"continue with --resume")
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        st.sums["seconds"] += time.monotonic() - t0
        self.progress.clear()

    def end_epoch(self, t0: float) -> None:
        """Validate, step the LR schedule, keep the best model, decide on early stopping, save."""
        cfg, st = self.cfg, self.state
        sums = D.all_reduce_sum(self.env, torch.tensor([st.sums["loss"], st.sums["correct"], st.sums["n"]],
                                                       dtype=torch.float64)).tolist()
        val = validate(unwrap(self.model), self.data.val, self.data.labels, self.env, cfg.batch_size)
        self.scheduler.step(val.loss)
        current = score(val, cfg.monitor)
        is_best = st.improved(current)
        n = max(1.0, sums[2])
        record = {"epoch": st.epoch, "train_loss": sums[0] / n, "train_acc": sums[1] / n,
                  "val_loss": val.loss, "val_acc": val.accuracy, "val_uar": val.uar,
                  "val_weighted_f1": val.weighted_f1, "lr": self.optimizer.param_groups[0]["lr"],
                  "best": is_best, "seconds": st.sums["seconds"]}
        st.history.append(record)
        if is_best:
            st.best, st.best_epoch, st.bad_epochs = current, st.epoch, 0
        else:
            st.bad_epochs += 1
        st.stopped_early = st.bad_epochs >= cfg.patience
        st.epoch, st.step, st.sums = st.epoch + 1, 0, RunState().sums
        st.finished = st.stopped_early or st.epoch > cfg.epochs
        if is_best:
            self.save_best(record)
        self.save_last()
        self.write_history()
        self.say(f"epoch {record['epoch']}/{cfg.epochs}  train loss {record['train_loss']:.4f} "
                 f"acc {record['train_acc']:.3f}  val loss {val.loss:.4f} acc {val.accuracy:.3f} "
                 f"UAR {val.uar:.3f}  lr {record['lr']:.2g}  {time.monotonic() - t0:.1f}s"
                 + ("  *best*" if is_best else ""))
        if st.stopped_early:
            self.say(f"early stopping: no validation improvement in {cfg.patience} epochs")

    # -- the end --------------------------------------------------------------------------
    def test_best(self) -> Optional[Metrics]:
        """Test-set metrics of ``best.pt`` (rank 0, when there are test speakers); writes
        ``metrics.json`` and ``metrics_confusion.png``."""
        if not self.env.is_main or not len(self.data.test):
            return None
        best = load_checkpoint(self.best_path)
        test = evaluate_features(best, self.data.test.feats, self.data.test.targets,
                                 self.cfg.batch_size * 2, str(self.env.device))
        test.extra.update({"split": "test", "checkpoint": self.best_path, "epoch": best.extra.get("epoch"),
                           "speakers": self.data.speakers["test"]})
        write_metrics(test, self.out, title=f"test (n={test.n}, UAR={test.uar:.3f})")
        self.say(f"test (best epoch {self.state.best_epoch}): acc {test.accuracy:.3f} UAR {test.uar:.3f} "
                 f"weighted F1 {test.weighted_f1:.3f} -> {os.path.join(self.out, 'metrics.json')}")
        return test

    def finish(self, t_start: float) -> TrainResult:
        st = self.state
        if st.best_epoch == 0:
            raise TrainError("training ended before any epoch completed")
        test = self.test_best()
        D.barrier(self.env)
        best_rec = next(r for r in st.history if r["epoch"] == st.best_epoch)
        return TrainResult(
            out_dir=self.out, best_path=self.best_path, last_path=self.last_path, labels=list(self.data.labels),
            best_epoch=st.best_epoch, epochs_run=len(st.history), stopped_early=st.stopped_early,
            best_val={k: v for k, v in best_rec.items() if k.startswith("val_")}, history=st.history,
            speakers=self.data.speakers, skipped=self.data.skipped, n_parameters=self.n_parameters, test=test,
            seconds=time.monotonic() - t_start)


__all__ = ["TrainConfig", "TrainError", "TrainResult", "Trainer", "train", "prepare", "epoch_batches",
           "augment_waveform", "class_weights", "choose_labels", "derived_seed"]
