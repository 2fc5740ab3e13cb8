"""Data preparation for training: corpus -> labels -> speaker-disjoint split -> raw features
(one :class:`FeatureStore`, disk-cached) -> normalisation fitted on the training speakers only.

Under ``torchrun`` each rank extracts a shard of the corpus and the shards are gathered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ser_edge import distributed as D
from ser_edge.config import TrainConfig
from ser_edge.data import (
    CANONICAL_LABELS,
    DataError,
    FeatureStore,
    Utterance,
    check_disjoint,
    load_corpus,
    speaker_split,
)
from ser_edge.runtime.features import FeatureConfig, RunningStats, normalise

Stats = Tuple[Tuple[float, ...], Tuple[float, ...]]

# ---------------------------------------------------------------------------------------
# Data preparation
# ---------------------------------------------------------------------------------------

@dataclass
class SplitData:
    """One split's usable items: normalised features ``[(t_i, n_features) float32]`` and class ids."""

    utts: List[Utterance]
    feats: List[np.ndarray]
    targets: np.ndarray  # (n,) int64
    #: normalised features of the training copies (``TrainConfig.copies``), one list per copy,
    #: aligned with ``utts``
    copies: List[List[np.ndarray]] = field(default_factory=list)

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
    #: speaker -> (mean, std) of that speaker's raw features, for a ``speaker_norm`` config
    speaker_stats: Dict[str, Stats] = field(default_factory=dict)

    def normalise(self, utt: Utterance, raw: np.ndarray) -> np.ndarray:
        """``raw (t, d)`` as the model sees it: the speaker's own statistics for a
        ``speaker_norm`` config, else the training population's."""
        return normalise(raw, self.cfg, self.speaker_stats.get(utt.speaker))


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


def extraction_progress(log: Callable[[str], None]) -> Callable[[int, int], None]:
    """``(done, total)`` -> a log line at every tenth of the way (extraction of a large corpus
    takes minutes; cached files are not counted)."""
    def report(done: int, total: int) -> None:
        if total >= 50 and (done == total or done % max(1, total // 10) == 0):
            log(f"features: {done}/{total} files extracted")
    return report


def load_features(store: FeatureStore, utts: Sequence[Utterance], workers: int, env: D.DistEnv,
                  log: Optional[Callable[[str], None]] = None,
                  copy: str = "") -> Tuple[Dict[str, np.ndarray], List[Tuple[str, str]]]:
    """Raw features by path for every readable utterance (or its training copy ``copy``), plus
    ``(path, reason)`` for the rest. Each rank extracts a shard (with ``workers`` processes) and
    the shards are gathered."""
    progress = extraction_progress(log) if log is not None and env.is_main else None
    kept, skipped = store.load(list(utts)[env.rank::env.world_size], workers=workers, progress=progress,
                               copy=copy)
    local = ({u.path: store.features(u, copy) for u in kept}, [(u.path, why) for u, why in skipped])
    feats: Dict[str, np.ndarray] = {}
    bad: List[Tuple[str, str]] = []
    for part_feats, part_bad in D.all_gather_objects(env, local):
        feats.update(part_feats)
        bad.extend(part_bad)
    return feats, sorted(set(bad))


def speaker_statistics(utts: Sequence[Utterance], raw: Dict[str, np.ndarray]) -> Dict[str, Stats]:
    """Per-speaker ``(mean, std)`` of the raw features of all that speaker's clips. For
    validation and test speakers this is adaptation from their own *unlabelled* audio (the
    enrolment a device would do), never from labels."""
    acc: Dict[str, RunningStats] = {}
    for u in utts:
        if u.path in raw:
            acc.setdefault(u.speaker, RunningStats()).update(raw[u.path])
    return {spk: st.result() for spk, st in acc.items()}


def prepare(cfg: TrainConfig, env: D.DistEnv, log: Callable[[str], None],
            utts: Optional[Sequence[Utterance]] = None, store: Optional[FeatureStore] = None) -> Prepared:
    """Load, split, extract and normalise. Raises :class:`DataError` for unusable data.

    ``utts`` (default: the corpus in ``cfg``) and ``store`` (default: a new one) let a caller that
    trains many times on one corpus (cross-validation) load and extract it once."""
    if utts is None:
        utts = load_corpus(cfg.data, os.fspath(cfg.root))
    labels = choose_labels(utts, cfg.labels)
    wanted = set(labels)
    utts = [u for u in utts if u.label in wanted]
    split = speaker_split(utts, cfg.ratios, cfg.seed, test_speakers=cfg.test_speakers,
                          val_speakers=cfg.val_speakers)
    check_disjoint(split)
    if not split.train:
        raise DataError(f"need training speakers, got {split.summary()}")
    if not split.val and cfg.select == "best":
        raise DataError(f"need validation speakers to select the best epoch (got {split.summary()}); "
                        f"give some, or train a fixed number of epochs with --select last")
    raw_cfg = cfg.feature_config()
    if store is None or store.cfg != raw_cfg:
        store = FeatureStore(raw_cfg, cfg.cache_dir)
    raw, skipped = load_features(store, utts, cfg.workers, env, log)
    for _path, why in skipped:
        log(f"skipping unusable file: {why}")

    index = {lab: i for i, lab in enumerate(labels)}
    train_utts = [u for u in split.train if u.path in raw]
    stats = RunningStats()  # fitted on the training split only: val/test must stay unseen
    for u in train_utts:
        stats.update(raw[u.path])
    try:
        fcfg = raw_cfg.with_stats(*stats.result())
    except ValueError:
        raise DataError("no readable training utterances") from None

    spk_stats = speaker_statistics(utts, raw) if raw_cfg.speaker_norm else {}

    def norm(u: Utterance, feats: np.ndarray) -> np.ndarray:
        return normalise(feats, fcfg, spk_stats.get(u.speaker))

    def part(us: Sequence[Utterance]) -> SplitData:
        kept = [u for u in us if u.path in raw]
        return SplitData(kept, [norm(u, raw[u.path]) for u in kept],
                         np.array([index[u.label] for u in kept], dtype=np.int64))

    train = part(split.train)
    train.copies = training_copies(store, train.utts, cfg, env, norm, log)
    data = Prepared(labels, raw_cfg, fcfg, train, part(split.val), part(split.test),
                    split.speakers(), skipped, store, spk_stats)
    empty = [lab for lab, n in zip(labels, np.bincount(data.train.targets, minlength=len(labels))) if n == 0]
    if empty:
        raise DataError(f"no training utterances for label(s) {', '.join(empty)}; "
                        f"choose a label subset or other speakers")
    if split.val and not len(data.val):
        raise DataError("no readable validation utterances")
    return data


def training_copies(store: FeatureStore, utts: Sequence[Utterance], cfg: TrainConfig, env: D.DistEnv,
                    norm: Callable[[Utterance, np.ndarray], np.ndarray],
                    log: Callable[[str], None]) -> List[List[np.ndarray]]:
    """Normalised features of each of ``cfg.copies`` for the training ``utts``
    (``[copy][item] (t, n_features) float32``), extracted once through the store's cache.
    Normalisation statistics stay those of the clips themselves: a copy is augmentation, not data
    the model is described by."""
    out = []
    for copy in cfg.copies:
        if env.is_main:
            log(f"features: training copies {copy}")
        raw, bad = load_features(store, utts, cfg.workers, env, log, copy=copy)
        if bad:  # a clip that loads should give its copies too; if not, say which
            raise DataError(f"training copy {copy} failed: {bad[0][1]}")
        out.append([norm(u, raw[u.path]) for u in utts])
    return out


def class_weights(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``(n_classes,) float32``, 1 on average over items:
    ``w_c = n / (k * n_c)``."""
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    return (len(targets) / (n_classes * np.maximum(counts, 1))).astype(np.float32)


__all__ = ["SplitData", "Prepared", "choose_labels", "load_features", "prepare", "class_weights", "training_copies"]
