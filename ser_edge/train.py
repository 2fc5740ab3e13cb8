"""The training loop: prepared data (:mod:`ser_edge.prepare`) -> model -> Adam with a cosine or
plateau schedule, gradient clipping, label smoothing, class weights, augmentation
(:mod:`ser_edge.augment`) and mixup -> validation every epoch -> best (or last) checkpoint ->
test metrics. Settings: :class:`ser_edge.config.TrainConfig`.

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
from ser_edge.augment import (
    STREAM_ITEM,
    STREAM_STEP,
    augment_waveform,
    derived_seed,
    epoch_batches,
    mixup_plan,
    random_crop,
    spec_augment,
)
from ser_edge.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ser_edge.config import RESUMABLE_CHANGES, TrainConfig, TrainError
from ser_edge.data import FeatureStore, Utterance
from ser_edge.evaluate import (
    Metrics,
    confusion_matrix,
    cross_entropy,
    evaluate_features,
    metrics_from_cm,
    pad_batch,
    predict_logits,
    write_metrics,
)
from ser_edge.models import ModelConfig, build_model, count_parameters
from ser_edge.prepare import Prepared, SplitData, choose_labels, class_weights, prepare
from ser_edge.runtime.features import raw_features
from ser_edge.runtime.io import atomic_write_json


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


def training_item(data: Prepared, i: int, epoch: int, cfg: TrainConfig) -> np.ndarray:
    """Training features of item ``i`` in ``epoch``: the clip or one of its copies (cached) or
    augmented (recomputed with the runtime's one feature implementation), randomly cropped,
    SpecAugment-masked.
    A pure function of ``(seed, epoch, i)``. ``-> (t, n_features) float32``."""
    rng = np.random.default_rng([cfg.seed, epoch, STREAM_ITEM, i])
    feats = data.train.feats[i]
    if data.train.copies:  # the clip or one of its cached copies, uniformly
        k = int(rng.integers(0, len(data.train.copies) + 1))
        feats = data.train.copies[k - 1][i] if k else feats
    if cfg.augment and rng.random() < cfg.augment_prob:
        y = data.store.waveform(data.train.utts[i])
        y = augment_waveform(y, data.raw_cfg.sample_rate, rng, cfg.noise_snr_db, cfg.speed_range, cfg.gain_db)
        feats = data.normalise(data.train.utts[i], raw_features(y, data.raw_cfg))
    feats = random_crop(feats, cfg.max_frames, rng)
    return spec_augment(feats, cfg.spec_augment, rng) if cfg.spec_augment else feats


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
        cm = confusion_matrix(y, logits.argmax(axis=1), k)
        loss_sum = cross_entropy(logits, y) * len(idx)
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
    def from_dict(cls, d: Dict[str, Any]) -> RunState:
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
          log: Optional[Callable[[str], None]] = None, utts: Optional[Sequence[Utterance]] = None,
          store: Optional[FeatureStore] = None) -> TrainResult:
    """Train, select on validation (or keep the last epoch), evaluate on test. See the module
    docstring.

    ``on_step(epoch, step)`` runs after every optimiser step (for tests and tooling); a
    ``KeyboardInterrupt`` it raises, like Ctrl-C, saves ``last.pt`` at that step first.
    ``utts``/``store``: see :func:`prepare`.
    Raises :class:`DataError` / :class:`TrainError` for unusable data or settings.
    """
    cfg.validate()
    t_start = time.monotonic()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    env = D.setup(cfg.device)
    # Gradients reaching early time steps of a long sequence decay into float32 denormals, which
    # make the CPU LSTM backward ~25x slower (seconds per batch); flushing them to zero changes
    # nothing measurable.
    torch.set_flush_denormal(True)
    try:
        trainer = Trainer(cfg, env, log, utts=utts, store=store)
        trainer.fit(on_step)
        return trainer.finish(t_start)
    finally:
        torch.set_flush_denormal(False)  # back to torch's default for the rest of the process
        D.teardown(env)


def cosine_lr(base: float, t: float, t0: int, t_mult: int) -> float:
    """SGDR (cosine annealing with warm restarts, ``eta_min = 0``) at epoch ``t`` (fractional,
    0-based): cycles of ``t0``, ``t0 * t_mult``, ... epochs. A pure function of ``t``, so a
    resumed run needs no scheduler state."""
    if t_mult == 1:
        t_cur, t_i = t % t0, float(t0)
    else:
        n = int(math.floor(math.log(t / t0 * (t_mult - 1) + 1, t_mult)))
        t_cur, t_i = t - t0 * (t_mult ** n - 1) / (t_mult - 1), float(t0 * t_mult ** n)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t_cur / t_i)))


class Trainer:
    """One run's data, model, optimiser and :class:`RunState`; methods are the loop's stages."""

    def __init__(self, cfg: TrainConfig, env: D.DistEnv, log: Optional[Callable[[str], None]] = None,
                 utts: Optional[Sequence[Utterance]] = None, store: Optional[FeatureStore] = None) -> None:
        self.cfg, self.env = cfg, env
        quiet: Callable[[str], None] = lambda _m: None  # noqa: E731
        self.say = (log or (_stderr_log if cfg.progress else quiet)) if env.is_main else quiet
        self.out = os.fspath(cfg.out_dir)
        self.best_path, self.last_path = os.path.join(self.out, "best.pt"), os.path.join(self.out, "last.pt")
        self._check_run_dir()
        self.data = data = prepare(cfg, env, self.say, utts=utts, store=store)
        spk = data.speakers
        self.say(f"data: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test utterances; "
                 f"speakers {len(spk['train'])}/{len(spk['val'])}/{len(spk['test'])}; labels {', '.join(data.labels)}"
                 + (f"; {len(data.skipped)} unusable skipped" if data.skipped else ""))
        self.mcfg = cfg.model_config(data.cfg.n_features, len(data.labels))
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
        self.say(f"model: {self.mcfg.arch} hidden {self.mcfg.hidden_size}, {self.n_parameters} parameters, "
                 f"{data.cfg.n_features} features, device {env.device}"
                 + (f", {env.world_size} ranks" if env.distributed else ""))
        self.progress = Progress(cfg.progress and env.is_main)

    # -- state in and out -----------------------------------------------------------------
    def _check_run_dir(self) -> None:
        """Never overwrite a run without being told to: ``--resume`` continues ``last.pt``,
        ``--overwrite`` starts again; a finished run (``best.pt`` without ``last.pt``) cannot
        be resumed."""
        has_last, has_best = os.path.exists(self.last_path), os.path.exists(self.best_path)
        if self.cfg.overwrite:
            return
        if self.cfg.resume:
            if not has_last and has_best:
                raise TrainError(f"{self.out} holds a finished run (best.pt) but no last.pt to resume from; "
                                 f"choose another --out, or pass --overwrite to replace it")
            return
        if has_last or has_best:
            raise TrainError(f"{self.out} already holds a training run; resume it (--resume), replace it "
                             f"(--overwrite) or choose another output directory")

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
        check_finite(unwrap(self.model))
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
                "monitor": self.cfg.monitor if self.cfg.select == "best" else "last epoch",
                "history": self.state.history}))

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
        """Padded training batch ``((b, t, n_features) float32, (b,) int64)``; a pure function of
        ``(seed, epoch, idx)``, so it can be built ahead in another thread."""
        return pad_batch([training_item(self.data, int(i), epoch, self.cfg) for i in idx])

    def set_lr(self, epoch: int, step: int, steps: int) -> None:
        """Cosine schedule: the LR of this step, from ``(epoch, step)`` alone."""
        if self.cfg.scheduler == "cosine":
            lr = cosine_lr(self.cfg.lr, epoch - 1 + step / max(1, steps), self.cfg.cosine_t0, self.cfg.cosine_t_mult)
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def train_step(self, batch: Tuple[np.ndarray, np.ndarray], idx: np.ndarray, epoch: int,
                   step: int) -> Tuple[float, float]:
        """One optimiser step on items ``idx``. ``-> (summed loss, correct predictions)``.
        Raises :class:`TrainError` on a non-finite loss (nothing is saved from such a step)."""
        cfg, dev = self.cfg, self.env.device
        x_np, lens_np = batch
        y = torch.from_numpy(self.data.train.targets[idx]).to(dev)
        x, lens = torch.from_numpy(x_np).to(dev), torch.from_numpy(lens_np).to(dev)
        lam, partner = 1.0, None
        if cfg.mixup > 0 and len(idx) > 1:
            lam, perm = mixup_plan(len(idx), cfg.mixup, cfg.seed, epoch, step)
            partner = torch.from_numpy(perm).to(dev)
            x = lam * x + (1.0 - lam) * x[partner]
            lens = torch.maximum(lens, lens[partner])  # the mixture spans both items' frames
        torch.manual_seed(derived_seed(cfg.seed, epoch, STREAM_STEP, step, self.env.rank))  # dropout masks
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x, lens)
        loss = self.criterion(logits, y)
        if partner is not None:
            loss = lam * loss + (1.0 - lam) * self.criterion(logits, y[partner])
        if not torch.isfinite(loss):
            raise TrainError(f"non-finite training loss at epoch {epoch}, step {step + 1} (learning rate "
                             f"{self.optimizer.param_groups[0]['lr']:.3g} too high?); stopped without saving it")
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
        # One thread builds the next batch (augmentation + features in numpy, which releases the
        # GIL) while torch trains on this one.
        pool = ThreadPoolExecutor(max_workers=1)
        steps = range(st.step, len(batches))
        ahead = pool.submit(self.make_batch, batches[steps[0]], st.epoch) if len(steps) else None
        try:
            for step in steps:
                batch = ahead.result()
                if step + 1 < len(batches):
                    ahead = pool.submit(self.make_batch, batches[step + 1], st.epoch)
                self.set_lr(st.epoch, step, len(batches))
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
        n = max(1.0, sums[2])
        record: Dict[str, Any] = {"epoch": st.epoch, "train_loss": sums[0] / n, "train_acc": sums[1] / n,
                                  "lr": self.optimizer.param_groups[0]["lr"], "seconds": st.sums["seconds"]}
        val = validate(unwrap(self.model), self.data.val, self.data.labels, self.env, cfg.batch_size) \
            if len(self.data.val) else None
        if val is not None:
            record.update(val_loss=val.loss, val_acc=val.accuracy, val_uar=val.uar, val_weighted_f1=val.weighted_f1)
            if cfg.scheduler == "plateau":
                self.scheduler.step(val.loss)
        if cfg.select == "last" or val is None:
            is_best = True
        else:
            current = score(val, cfg.monitor)
            is_best = st.improved(current)
            if is_best:
                st.best = current
        record["best"] = is_best
        st.history.append(record)
        if is_best:
            st.best_epoch, st.bad_epochs = st.epoch, 0
        else:
            st.bad_epochs += 1
        st.stopped_early = bool(cfg.patience) and val is not None and cfg.select == "best" \
            and st.bad_epochs >= cfg.patience
        st.epoch, st.step, st.sums = st.epoch + 1, 0, RunState().sums
        st.finished = st.stopped_early or st.epoch > cfg.epochs
        if is_best:
            self.save_best(record)
        self.save_last()
        self.write_history()
        val_text = (f"  val loss {val.loss:.4f} acc {val.accuracy:.3f} UAR {val.uar:.3f}" if val is not None else "")
        self.say(f"epoch {record['epoch']}/{cfg.epochs}  train loss {record['train_loss']:.4f} "
                 f"acc {record['train_acc']:.3f}{val_text}  lr {record['lr']:.2g}  {time.monotonic() - t0:.1f}s"
                 + ("  *best*" if is_best and cfg.select == "best" else ""))
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


def check_finite(model: nn.Module) -> None:
    """Refuse to save weights holding NaN or infinity. Raises :class:`TrainError`."""
    bad = [name for name, t in model.state_dict().items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise TrainError(f"training diverged: non-finite weights in {', '.join(bad[:3])}"
                         + (" ..." if len(bad) > 3 else "") + "; nothing was saved (lower the learning rate?)")


__all__ = ["TrainConfig", "TrainError", "TrainResult", "Trainer", "train", "prepare", "epoch_batches",
           "augment_waveform", "class_weights", "choose_labels", "derived_seed", "cosine_lr", "training_item"]
