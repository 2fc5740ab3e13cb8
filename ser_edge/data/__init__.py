"""Datasets: corpus loaders, canonical labels, speaker splits, a feature cache, a synthetic corpus.

``synth_corpus`` is resolved lazily (PEP 562 ``__getattr__``) so importing the data layer does
not pay for the synthesiser.
"""

from __future__ import annotations

from typing import Any

from .corpora import CORPORA, EXPECTED_LAYOUT, CorpusIndex, Utterance, corpus_name, label_counts, load_corpus
from .labels import CANONICAL_LABELS, DataError, normalise_label
from .splits import PARTS, Split, check_disjoint, speaker_split
from .store import FeatureStore

__all__ = [
    "CANONICAL_LABELS", "CORPORA", "EXPECTED_LAYOUT", "PARTS",
    "CorpusIndex", "DataError", "FeatureStore", "Split", "Utterance",
    "check_disjoint", "corpus_name", "label_counts", "load_corpus", "normalise_label",
    "speaker_split", "synth_corpus",
]


def __getattr__(name: str) -> Any:
    if name == "synth_corpus":
        from .synth import synth_corpus

        return synth_corpus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
