"""Speaker-independent train/val/test splits.

A model evaluated on speakers it was trained on reports inflated accuracy (it partly learns
voices), so every split here is by speaker: no speaker appears in two parts.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from itertools import combinations
from typing import Dict, Iterable, List, Sequence, Tuple, Union

from .corpora import Utterance
from .labels import DataError

PARTS = ("train", "val", "test")

Speakers = Union[str, Iterable[str], None]


@dataclass
class Split:
    """Utterances per part, in the order they were given to :func:`speaker_split`."""

    train: List[Utterance] = field(default_factory=list)
    val: List[Utterance] = field(default_factory=list)
    test: List[Utterance] = field(default_factory=list)

    def part(self, name: str) -> List[Utterance]:
        return getattr(self, name)

    def speakers(self) -> Dict[str, List[str]]:
        """``{"train": [...], "val": [...], "test": [...]}``, each sorted and distinct."""
        return {p: sorted({u.speaker for u in self.part(p)}) for p in PARTS}

    def summary(self) -> str:
        """One line: utterances and speakers per part."""
        spk = self.speakers()
        return ", ".join(f"{p} {len(self.part(p))} utts / {len(spk[p])} speakers" for p in PARTS)


def _check_ratios(ratios: Sequence[float]) -> Tuple[float, float, float]:
    """Validate and normalise to sum 1 (so ``(8, 1, 1)`` works too)."""
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or not all(math.isfinite(x) and x >= 0 for x in r) or sum(r) <= 0:
        raise DataError(f"split ratios must be three non-negative numbers with a positive sum, got {ratios!r}")
    total = sum(r)
    return r[0] / total, r[1] / total, r[2] / total


def allocate(n: int, ratios: Sequence[float]) -> List[int]:
    """Split ``n`` speakers into ``len(ratios)`` counts summing to ``n``.

    Largest-remainder rounding, then every part with a positive ratio gets at least one speaker
    when ``n`` allows it (taken from the largest part): a 10 % test share of 5 speakers must
    not round to an empty test set.
    """
    raw = [n * r for r in ratios]
    counts = [math.floor(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    positive = [i for i, r in enumerate(ratios) if r > 0]
    if n >= len(positive):
        for i in positive:
            if counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def _as_set(speakers: Speakers) -> set:
    if speakers is None:
        return set()
    return {speakers} if isinstance(speakers, str) else set(speakers)


def _fixed_parts(known: Sequence[str], val_speakers: Speakers, test_speakers: Speakers) -> Dict[str, set]:
    """Explicitly requested ``{part: speakers}``, validated against the corpus and each other."""
    fixed = {}
    for part, given in (("val", val_speakers), ("test", test_speakers)):
        if given is None:
            continue
        chosen = _as_set(given)
        unknown = sorted(chosen - set(known))
        if unknown or not chosen:
            raise DataError(f"{part} speakers not in the corpus: {', '.join(unknown) or '(none given)'}")
        fixed[part] = chosen
    if "val" in fixed and "test" in fixed and fixed["val"] & fixed["test"]:
        raise DataError(f"speakers requested for both val and test: {', '.join(sorted(fixed['val'] & fixed['test']))}")
    return fixed


def assign_speakers(speakers: Sequence[str], ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                    test_speakers: Speakers = None, val_speakers: Speakers = None) -> Dict[str, str]:
    """``{speaker: part}``. Explicit val/test speakers are fixed; the rest are shuffled with
    ``seed`` and shared among the remaining parts by their (renormalised) ratios."""
    known = sorted(set(speakers))
    fixed = _fixed_parts(known, val_speakers, test_speakers)
    r = _check_ratios(ratios)
    free_parts = [i for i, p in enumerate(PARTS) if p not in fixed]
    sub = [r[i] for i in free_parts]
    if sum(sub) == 0:  # every remaining ratio is 0: leftover speakers train (train is always free)
        sub = [1.0] + [0.0] * (len(sub) - 1)
    free = [s for s in known if not any(s in v for v in fixed.values())]
    random.Random(seed).shuffle(free)  # stdlib Random: same order on every platform and version
    out = {s: p for p, v in fixed.items() for s in v}
    start = 0
    for i, count in zip(free_parts, allocate(len(free), [x / sum(sub) for x in sub])):
        out.update((s, PARTS[i]) for s in free[start:start + count])
        start += count
    return out


def speaker_split(utts: Iterable[Utterance], ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                  test_speakers: Speakers = None, val_speakers: Speakers = None) -> Split:
    """Speaker-independent split, deterministic for a given ``seed`` and set of speakers.

    ``ratios`` are shares of *speakers* (not utterances). With at least as many speakers as
    positive ratios, each such part gets at least one speaker. ``test_speakers``/``val_speakers``
    pin those parts exactly. Raises :class:`DataError` for an empty input, bad ratios, or
    unknown / doubly-requested speakers.
    """
    utts = list(utts)
    if not utts:
        raise DataError("cannot split an empty list of utterances")
    part_of = assign_speakers([u.speaker for u in utts], ratios, seed, test_speakers, val_speakers)
    split = Split()
    for u in utts:
        split.part(part_of[u.speaker]).append(u)
    return split


def check_disjoint(split: Split) -> None:
    """Raise :class:`DataError` if a speaker or a file appears in two parts."""
    spk = split.speakers()
    for a, b in combinations(PARTS, 2):
        shared = sorted(set(spk[a]) & set(spk[b]))
        if shared:
            raise DataError(f"speakers in both {a} and {b}: {', '.join(shared[:5])}"
                            + (f" (+{len(shared) - 5} more)" if len(shared) > 5 else ""))
        paths = {u.path for u in split.part(a)} & {u.path for u in split.part(b)}
        if paths:
            raise DataError(f"{len(paths)} files in both {a} and {b}, e.g. {sorted(paths)[0]}")


__all__ = ["PARTS", "Split", "allocate", "assign_speakers", "check_disjoint", "speaker_split"]
