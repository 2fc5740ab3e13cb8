"""Waveforms and raw MFCCs for utterances: computed once, memoised, optionally cached on disk.

Features are the runtime's own ``raw_features`` (one implementation for training and the device), raw:
normalisation statistics are fitted later on the training split, so they are deliberately left
out of the cache key — refitting them must not invalidate hours of feature extraction.

Disk cache: ``<cache_dir>/<sha256>.npy`` where the hash covers the file's absolute path, size and
mtime plus the feature config (without mean/std); a changed file or config simply misses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from ser_edge.augment import perturb_copy
from ser_edge.runtime.audio import AudioError, check_waveform, load_clip, read_wav
from ser_edge.runtime.features import FeatureConfig, raw_features
from ser_edge.runtime.io import atomic_path

from .corpora import CorpusIndex, Utterance

Skipped = List[Tuple[Utterance, str]]


#: Part of every cache key: bumped when what may be cached changes (2: only clips that pass the
#: runtime's usability check, ``check_waveform``, so a cache from before cannot bring back a
#: silent or too-short clip; 3: chroma of frames below ``top_db`` is gated to 0).
CACHE_VERSION = 3


def audio_problem(path: str) -> str:
    """Why ``path`` is not a usable clip, or ``""``: exactly the runtime's checks (a regular,
    readable WAV, then :func:`~ser_edge.runtime.audio.check_waveform`: not too short, not
    silent), at the file's own rate. For ``data info``; training gets the same through
    :func:`~ser_edge.runtime.audio.load_clip`."""
    try:
        y, sr = read_wav(path)
        check_waveform(y, sr, path)
    except AudioError as e:
        msg = str(e)
        return msg[len(path) + 2:] if msg.startswith(f"{path}: ") else msg  # listed beside its path
    except MemoryError:
        return "out of memory"
    return ""


def check_corpus_audio(index: CorpusIndex) -> CorpusIndex:
    """``index`` without the files :func:`audio_problem` refuses, which join ``skipped`` with the
    reason: what ``data info`` reports is what training will use."""
    kept, skipped = [], list(index.skipped)
    for utt in index:
        problem = audio_problem(utt.path)
        if problem:
            skipped.append((utt.path, problem))
        else:
            kept.append(utt)
    return CorpusIndex(kept, sorted(skipped), index.name, index.root)


def config_key(cfg: FeatureConfig) -> str:
    """The parts of ``cfg`` that change raw MFCCs, as JSON (mean/std excluded)."""
    return dataclasses.replace(cfg, mean=None, std=None).to_json()


def cache_key(path: str, cfg_key: str) -> str:
    """sha256 hex of (absolute path, size, mtime_ns, config). Raises :class:`AudioError` if the
    file is gone (the same error reading it would give)."""
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise AudioError(f"{path}: cannot stat ({e.strerror or e})") from None
    blob = json.dumps([path, st.st_size, st.st_mtime_ns, cfg_key, CACHE_VERSION])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _read_cached(file: str, n_features: int) -> Optional[np.ndarray]:
    """``(n_frames, n_features) float32`` from ``file``, or ``None`` if absent or damaged."""
    try:
        arr = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    ok = arr.ndim == 2 and arr.shape[1] == n_features and arr.shape[0] > 0 and arr.dtype == np.float32
    return arr if ok else None


def _write_cached(file: str, feats: np.ndarray) -> None:
    """Atomic, so a killed run or a parallel writer never leaves a half-written ``.npy``."""
    with atomic_path(file) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, feats, allow_pickle=False)


def variant_key(cfg: FeatureConfig, copy: str = "") -> str:
    """Cache-key config part of ``cfg`` for the cached training copy ``copy`` of a clip (see
    :func:`~ser_edge.augment.perturb_copy`; ``""``: the clip itself, the key it always had)."""
    return config_key(cfg) if not copy else json.dumps([config_key(cfg), "copy", copy])


def cache_file(cache_dir: Optional[str], path: str, cfg: FeatureConfig, copy: str = "") -> Optional[str]:
    """Where the features of ``path`` (or of its training copy ``copy``) are, or would be,
    cached under ``cache_dir``; ``None`` without a cache dir."""
    return os.path.join(cache_dir, cache_key(path, variant_key(cfg, copy)) + ".npy") if cache_dir else None


def compute_features(path: str, cfg: FeatureConfig, cache_dir: Optional[str] = None,
                     copy: str = "") -> Tuple[np.ndarray, bool]:
    """Raw features of one file (or of its training copy ``copy``, see
    :func:`~ser_edge.augment.perturb_copy`) via the disk cache.
    ``-> ((n_frames, n_features) float32, from_cache)``.

    Raises :class:`AudioError` for an unreadable, too short or silent file (the runtime's checks).
    """
    file = cache_file(cache_dir, path, cfg, copy)
    if file is not None:
        cached = _read_cached(file, cfg.n_features)
        if cached is not None:
            return cached, True
    y = load_clip(path, cfg.sample_rate)
    feats = raw_features(perturb_copy(y, cfg.sample_rate, copy, os.path.basename(path)) if copy else y, cfg)
    if file is not None:
        _write_cached(file, feats)
    return feats, False


def _worker(job: Tuple[str, str, Optional[str], str]) -> Tuple[str, Optional[np.ndarray], bool, str]:
    """Pool task (top level so spawn can pickle it): ``(path, cfg_json, cache_dir, copy)`` ->
    ``(path, feats or None, from_cache, error message)``."""
    path, cfg_json, cache_dir, copy = job
    try:
        feats, hit = compute_features(path, FeatureConfig.from_json(cfg_json), cache_dir, copy)
        return path, feats, hit, ""
    except AudioError as e:
        return path, None, False, str(e)


class FeatureStore:
    """Per-utterance waveforms and raw features for one :class:`FeatureConfig`.

    ``features`` are memoised in memory (the second epoch costs nothing) and, with ``cache_dir``,
    on disk across runs; so are the features of training copies (``copy``, e.g. ``"speed:0.9"``),
    kept apart from the clip's own. ``waveform`` is memoised only for what is asked for, so
    extracting features for a large corpus does not also hold all of its audio in memory.
    ``stats`` counts ``{"disk": hits, "computed": extractions}``.
    """

    def __init__(self, cfg: FeatureConfig, cache_dir: Optional[str] = None) -> None:
        self.cfg = cfg
        self.cache_dir = os.path.abspath(os.fspath(cache_dir)) if cache_dir is not None else None
        if self.cache_dir is not None:
            os.makedirs(self.cache_dir, exist_ok=True)
        self._waves: Dict[str, np.ndarray] = {}
        self._feats: Dict[Tuple[str, str], np.ndarray] = {}
        self.stats = {"disk": 0, "computed": 0}

    def cache_file(self, utt: Utterance, copy: str = "") -> Optional[str]:
        """Where ``utt``'s features are (or would be) cached; ``None`` without a cache dir."""
        return cache_file(self.cache_dir, utt.path, self.cfg, copy)

    def waveform(self, utt: Utterance) -> np.ndarray:
        """``(n_samples,) float32`` at ``cfg.sample_rate``, memoised. Raises :class:`AudioError`."""
        if utt.path not in self._waves:
            self._waves[utt.path] = load_clip(utt.path, self.cfg.sample_rate)
        return self._waves[utt.path]

    def features(self, utt: Utterance, copy: str = "") -> np.ndarray:
        """Raw features ``(n_frames, n_features) float32`` of ``utt`` (or of its training copy
        ``copy``), memoised and disk-cached. Raises :class:`AudioError`."""
        key = (utt.path, copy)
        if key not in self._feats:
            self._remember(key, *compute_features(utt.path, self.cfg, self.cache_dir, copy))
        return self._feats[key]

    def _remember(self, key: Tuple[str, str], feats: np.ndarray, from_cache: bool) -> None:
        self._feats[key] = feats
        self.stats["disk" if from_cache else "computed"] += 1

    def load(self, utts: Iterable[Utterance], workers: int = 1,
             progress: Optional[Callable[[int, int], None]] = None,
             copy: str = "") -> Tuple[List[Utterance], Skipped]:
        """Compute (or fetch) features for every utterance (or its training copy ``copy``).
        ``-> (kept, [(utt, reason), ...])``.

        Unreadable or corrupt audio is reported in the second list, never raised. ``workers > 1``
        extracts in a spawn-context process pool (safe next to torch's threads, same on every
        OS) and fills the disk cache from the workers; as with any spawn pool, a script calling
        it needs an ``if __name__ == "__main__":`` guard. ``progress(done, total)`` is called
        after each file that was not already in memory.
        """
        utts = list(utts)
        todo = sorted({u.path for u in utts} - {p for p, c in self._feats if c == copy})
        tick = (lambda i: progress(i, len(todo))) if progress is not None else (lambda i: None)
        errors = (self._load_parallel(todo, workers, tick, copy) if workers > 1 and len(todo) > 1
                  else self._load_serial(todo, tick, copy))
        kept = [u for u in utts if (u.path, copy) in self._feats]
        skipped = [(u, errors[u.path]) for u in utts if u.path in errors]
        return kept, skipped

    def _load_serial(self, paths: List[str], tick: Callable[[int], None], copy: str) -> Dict[str, str]:
        """Extract in this process. ``-> {path: error message}`` for failures."""
        errors = {}
        for i, path in enumerate(paths, 1):
            try:
                self._remember((path, copy), *compute_features(path, self.cfg, self.cache_dir, copy))
            except AudioError as e:
                errors[path] = str(e)
            tick(i)
        return errors

    def _load_parallel(self, paths: List[str], workers: int, tick: Callable[[int], None],
                       copy: str) -> Dict[str, str]:
        """Extract in ``workers`` processes. ``-> {path: error message}`` for failures."""
        jobs = [(p, self.cfg.to_json(), self.cache_dir, copy) for p in paths]
        n = min(workers, len(jobs))
        errors = {}
        with multiprocessing.get_context("spawn").Pool(n) as pool:
            results = pool.imap_unordered(_worker, jobs, chunksize=max(1, len(jobs) // (8 * n)))
            for i, (path, feats, hit, err) in enumerate(results, 1):
                if feats is None:
                    errors[path] = err
                else:
                    self._remember((path, copy), feats, hit)
                tick(i)
        return errors


__all__ = ["FeatureStore", "cache_file", "cache_key", "compute_features", "config_key", "variant_key"]
