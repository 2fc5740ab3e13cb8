"""Emotion labels: the canonical set, synonyms, and each corpus's codes mapped onto it.

Every corpus loader returns canonical names where the corpus has them, so models trained on
different corpora share one label vocabulary. A code that maps to ``None`` has no canonical
counterpart; its files are skipped *with that reason* (see :data:`SKIP_REASONS`), never
silently relabelled.
"""

from __future__ import annotations

from typing import Dict, Optional

from ser_edge.runtime.errors import SerEdgeError

CANONICAL_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


class DataError(SerEdgeError, ValueError):
    """A corpus, manifest or split request that cannot be honoured. The message says why."""


#: Common spellings of the canonical emotions (after lower-casing).
SYNONYMS: Dict[str, str] = {
    "neutrality": "neutral", "neu": "neutral",
    "calmness": "calm",
    "happiness": "happy", "joy": "happy", "hap": "happy",
    "sadness": "sad",
    "anger": "angry", "ang": "angry",
    "fear": "fearful", "fea": "fearful", "afraid": "fearful",
    "disgusted": "disgust", "dis": "disgust",
    "surprise": "surprised", "sur": "surprised", "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised", "ps": "surprised",
}

#: RAVDESS emotion field (3rd of ``03-01-EE-II-SS-RR-AA``).
RAVDESS_EMOTIONS: Dict[str, str] = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}

#: CREMA-D emotion field (3rd of ``1001_DFA_ANG_XX``).
CREMA_D_EMOTIONS: Dict[str, str] = {
    "ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad",
}

#: TESS last filename field (``OAF_back_angry``); ``ps`` is "pleasant surprise".
TESS_EMOTIONS: Dict[str, str] = {
    "angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
    "neutral": "neutral", "sad": "sad", "ps": "surprised",
}

#: EmoDB emotion letter (6th character of ``03a01Fa``), German initials.
EMODB_EMOTIONS: Dict[str, Optional[str]] = {
    "W": "angry",    # Wut
    "L": None,       # Langeweile = boredom: not canonical, skipped
    "E": "disgust",  # Ekel
    "A": "fearful",  # Angst
    "F": "happy",    # Freude
    "T": "sad",      # Trauer
    "N": "neutral",
}

#: IEMOCAP categorical label (4th column of EmoEvaluation lines). ``exc`` (excited) is merged
#: into ``happy``, as most IEMOCAP SER papers do (the "4-class hap+exc" protocol).
IEMOCAP_EMOTIONS: Dict[str, Optional[str]] = {
    "neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry",
    "fea": "fearful", "sur": "surprised", "dis": "disgust",
    "fru": None, "oth": None, "xxx": None,
}

#: Why a code without a canonical label is skipped (shown in the skipped-files report).
SKIP_REASONS: Dict[str, str] = {
    "emodb:L": "EmoDB boredom (L) has no canonical label",
    "iemocap:fru": "IEMOCAP frustration (fru) has no canonical label",
    "iemocap:oth": "IEMOCAP 'other' (oth) has no canonical label",
    "iemocap:xxx": "IEMOCAP 'xxx': annotators did not agree",
}


def normalise_label(raw: str) -> str:
    """Canonical name for ``raw`` (case/whitespace/synonym-insensitive), else ``raw`` lower-cased.

    Non-canonical labels are allowed (custom label sets in ``folder``/``manifest`` corpora);
    they are only lower-cased and stripped so ``Bored`` and ``bored`` are one class.
    Raises :class:`DataError` for an empty label.
    """
    plain = raw.strip().lower()
    if not plain:
        raise DataError("empty emotion label")
    key = plain.replace(" ", "_").replace("-", "_")  # "pleasant surprise" == "pleasant_surprise"
    return key if key in CANONICAL_LABELS else SYNONYMS.get(key, plain)
