"""Corpus loaders: a directory of some known layout -> a sorted list of :class:`Utterance`.

Each loader only reads names (and, for IEMOCAP and manifests, small text files); audio is read
later by :class:`ser_edge.data.store.FeatureStore`. Files whose names cannot be parsed, or whose
emotion has no canonical label, are *skipped and reported* in :attr:`CorpusIndex.skipped`, so a
user can see why 6 of 1440 files are missing instead of guessing.

Layouts (speaker ids in brackets):

- ``ravdess``: ``**/03-01-EE-II-SS-RR-AA.wav`` [``Actor_AA``]; audio-only (03) speech (01) only,
  song (vocal channel 02) is skipped.
- ``crema-d``: ``**/1001_DFA_ANG_XX.wav`` [``1001``].
- ``tess``: ``**/OAF_back_angry.wav``, ``**/YAF_back_ps.wav`` [``OAF``/``YAF``]; ``ps`` = pleasant
  surprise -> ``surprised``.
- ``emodb``: ``**/03a01Fa.wav`` [``03``]; boredom (``L``) is skipped: it has no canonical label.
- ``iemocap``: ``Session{1..5}/dialog/EmoEvaluation/*.txt`` + ``Session*/sentences/wav/<dialog>/<utt>.wav``
  [session + utterance speaker's gender, ``Ses01F``]; ``exc`` merged into ``happy``;
  ``fru``/``oth``/``xxx`` skipped.
- ``folder``: ``<root>/<label>/[<speaker>/]*.wav``; without a speaker directory the speaker is the
  file name before its first ``_`` or ``-`` (the whole stem if it has neither).
- ``manifest``: a CSV file (or a directory holding ``manifest.csv``) with header ``path,label,speaker``;
  relative paths are resolved against the CSV's directory.

``folder`` and ``manifest`` accept custom labels; canonical ones are normalised
(:func:`ser_edge.data.labels.normalise_label`).
"""

from __future__ import annotations

import csv
import glob
import os
import re
import stat
from dataclasses import dataclass
from typing import Callable, Iterable, List, Tuple, Union

from ser_edge.runtime.audio import file_kind

from .labels import (
    CANONICAL_LABELS,
    CREMA_D_EMOTIONS,
    EMODB_EMOTIONS,
    IEMOCAP_EMOTIONS,
    RAVDESS_EMOTIONS,
    SKIP_REASONS,
    TESS_EMOTIONS,
    DataError,
    normalise_label,
)

CORPORA = ("ravdess", "crema-d", "tess", "emodb", "iemocap", "folder", "manifest")

#: What each loader looks for; quoted when a corpus yields no usable files.
EXPECTED_LAYOUT = {
    "ravdess": "Actor_*/03-01-EE-II-SS-RR-AA.wav (audio-only speech)",
    "crema-d": "<id>_<sentence>_<EMO>_<level>.wav, e.g. 1001_DFA_ANG_XX.wav",
    "tess": "<OAF|YAF>_<word>_<emotion>.wav, e.g. OAF_back_angry.wav",
    "emodb": "<speaker 2 digits><text 3 chars><emotion letter><version>.wav, e.g. 03a01Fa.wav",
    "iemocap": "Session1..5/dialog/EmoEvaluation/*.txt and Session*/sentences/wav/<dialog>/<utt>.wav",
    "folder": "<root>/<label>/[<speaker>/]*.wav",
    "manifest": "a manifest.csv with header path,label,speaker",
}

_ALIASES = {"cremad": "crema-d", "crema_d": "crema-d", "emo-db": "emodb", "emo_db": "emodb"}


@dataclass(frozen=True)
class Utterance:
    """One labelled recording. ``path`` is absolute; ``speaker`` is unique within ``corpus``."""

    path: str
    label: str
    speaker: str
    corpus: str


class CorpusIndex(list):
    """``list[Utterance]`` sorted by path, plus what was left out.

    ``skipped``: ``list[(path, reason)]`` of files (or manifest lines) that were found but not
    used; ``name``/``root``: what was loaded.
    """

    def __init__(self, utts: Iterable[Utterance] = (), skipped: Iterable[Tuple[str, str]] = (),
                 name: str = "", root: str = "") -> None:
        super().__init__(utts)
        self.skipped: List[Tuple[str, str]] = list(skipped)
        self.name = name
        self.root = root

    def speakers(self) -> List[str]:
        """Sorted distinct speaker ids."""
        return sorted({u.speaker for u in self})

    def labels(self) -> List[str]:
        """Sorted distinct labels."""
        return sorted({u.label for u in self})

    def summary(self) -> str:
        """One line for a CLI: files, speakers, labels, skipped."""
        return (f"{self.name}: {len(self)} files, {len(self.speakers())} speakers, "
                f"{len(self.labels())} labels ({', '.join(self.labels())}), {len(self.skipped)} skipped")


# A filename parser returns (label, speaker) or, when the file cannot be used, the reason.
Parsed = Union[Tuple[str, str], str]


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _wav_files(root: str) -> List[str]:
    """Absolute paths of ``*.wav`` (any case) under ``root``, sorted; hidden directories pruned."""
    out: List[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out.extend(os.path.join(dirpath, f) for f in filenames if f.lower().endswith(".wav"))
    return sorted(os.path.abspath(p) for p in out)


# -- filename parsers ----------------------------------------------------------------------

_RAVDESS_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


#: Prefix of a skip reason saying a file's codes are ones RAVDESS never uses: such files are
#: another corpus with the same naming pattern (e.g. BanglaSER, whose 01 is happy), not RAVDESS.
NOT_RAVDESS = "not RAVDESS: "
#: Share of name-matching files with impossible codes above which the whole corpus is refused.
MAX_NOT_RAVDESS_SHARE = 0.02
_ACTOR_DIR = re.compile(r"^Actor_(\d\d)$")


def _ravdess_codes(fields: Tuple[str, ...]) -> str:
    """Why the seven code fields cannot be RAVDESS's (empty when they can): modality 01-03, vocal
    channel 01/02, emotion 01-08, intensity 01/02 (neutral only 01), statement 01/02, repetition
    01/02, actor 01-24."""
    modality, channel, emotion, intensity, statement, repetition, actor = fields
    for name, value, valid in (("modality", modality, ("01", "02", "03")), ("vocal channel", channel, ("01", "02")),
                               ("emotion", emotion, tuple(RAVDESS_EMOTIONS)), ("intensity", intensity, ("01", "02")),
                               ("statement", statement, ("01", "02")), ("repetition", repetition, ("01", "02"))):
        if value not in valid:
            return f"{name} code {value} (RAVDESS uses {valid[0]}-{valid[-1]})"
    if emotion == "01" and intensity == "02":
        return "neutral (01) with strong intensity (02), which RAVDESS never records"
    if not 1 <= int(actor) <= 24:
        return f"actor {actor} (RAVDESS has actors 01-24)"
    return ""


def _ravdess(path: str, root: str) -> Parsed:
    m = _RAVDESS_RE.match(_stem(path))
    if not m:
        return "name is not MM-VV-EE-II-SS-RR-AA"
    impossible = _ravdess_codes(m.groups())
    if impossible:
        return NOT_RAVDESS + impossible
    modality, channel, emotion, actor = m.group(1), m.group(2), m.group(3), m.group(7)
    folder = _ACTOR_DIR.match(os.path.basename(os.path.dirname(path)))
    if folder and folder.group(1) != actor:
        return f"{NOT_RAVDESS}actor code {actor} in folder Actor_{folder.group(1)}"
    if modality != "03":
        return f"modality {modality} is not audio-only (03)"
    if channel != "01":
        return "song (vocal channel 02), not speech"
    return RAVDESS_EMOTIONS[emotion], f"Actor_{actor}"


def _load_ravdess(name: str, root: str) -> CorpusIndex:
    """RAVDESS by file name; refused when too many names carry codes RAVDESS never uses (another
    corpus with the same pattern would be silently mislabelled). Fewer stay skipped, with reasons."""
    index = _from_filenames(name, root, _ravdess)
    bad = [(p, r) for p, r in index.skipped if r.startswith(NOT_RAVDESS)]
    matching = len(index) + sum(1 for p, r in index.skipped if not r.startswith("name is not"))
    if bad and len(bad) > MAX_NOT_RAVDESS_SHARE * matching:
        path, reason = bad[0]
        raise DataError(f"ravdess: {len(bad)} of {matching} files under {root} have codes RAVDESS never uses, "
                        f"e.g. {os.path.basename(path)}: {reason[len(NOT_RAVDESS):]}. This looks like another "
                        "corpus with RAVDESS-style names (e.g. BanglaSER, whose codes mean other emotions); "
                        "its labels would be wrong. Use --data folder or manifest with its own labels.")
    return index


_CREMA_RE = re.compile(r"^(\d+)_([A-Za-z]{3})_([A-Za-z]{3})_([A-Za-z]{2})$")


def _crema_d(path: str, root: str) -> Parsed:
    m = _CREMA_RE.match(_stem(path))
    if not m:
        return "name is not <id>_<sentence>_<EMO>_<level>"
    emotion = m.group(3).upper()
    if emotion not in CREMA_D_EMOTIONS:
        return f"unknown emotion code {emotion}"
    return CREMA_D_EMOTIONS[emotion], m.group(1)


TESS_SPEAKERS = ("OAF", "YAF")


def _tess(path: str, root: str) -> Parsed:
    parts = _stem(path).split("_")
    if len(parts) < 3:
        return "name is not <speaker>_<word>_<emotion>"
    # Trust the folder (OAF_angry/) over a mistyped file prefix when the two disagree.
    speaker = parts[0].upper()
    if speaker not in TESS_SPEAKERS:
        speaker = os.path.basename(os.path.dirname(path)).split("_")[0].upper()
    if speaker not in TESS_SPEAKERS:
        return f"speaker prefix {parts[0]!r} is not one of {'/'.join(TESS_SPEAKERS)}"
    emotion = parts[-1].lower()
    label = TESS_EMOTIONS.get(emotion) or normalise_label(emotion)
    if label not in CANONICAL_LABELS:
        return f"unknown emotion {emotion!r}"
    return label, speaker


_EMODB_RE = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z]?)$")


def _emodb(path: str, root: str) -> Parsed:
    m = _EMODB_RE.match(_stem(path))
    if not m:
        return "name is not <speaker:2 digits><text:3><emotion letter><version>"
    letter = m.group(3)
    if letter not in EMODB_EMOTIONS:
        return f"unknown emotion letter {letter}"
    label = EMODB_EMOTIONS[letter]
    return (label, m.group(1)) if label else SKIP_REASONS[f"emodb:{letter}"]


def _stem_prefix(stem: str) -> str:
    """``"spk3_0001" -> "spk3"``; the whole stem when there is no ``_``/``-`` separator."""
    head = re.split(r"[_-]", stem, maxsplit=1)[0]
    return head or stem


_NOT_IN_LABEL_DIR = "not inside a <label>/ directory"


def _folder(path: str, root: str) -> Parsed:
    rel = os.path.relpath(path, root).split(os.sep)
    if len(rel) < 2:
        return _NOT_IN_LABEL_DIR
    speaker = rel[1] if len(rel) >= 3 else _stem_prefix(_stem(path))
    return normalise_label(rel[0]), speaker


def _not_regular(path: str) -> str:
    """Why ``path`` is not a regular file (a FIFO, a device, ...; found by ``stat``, never opened:
    reading a FIFO blocks forever), or ``""``."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return f"cannot stat ({e.strerror or e})"
    return "" if stat.S_ISREG(mode) else f"is {file_kind(mode)}, not a WAV file"


def _check_folder_layout(index: CorpusIndex, root: str) -> CorpusIndex:
    """A ``folder`` corpus needs one directory per label, and at least two labels; anything else
    (a flat folder, or ROOT pointed one level too deep or too high) is refused with what was
    expected and what was found, instead of one label named after a directory."""
    if len(index.labels()) >= 2:
        return index
    loose = sum(1 for _, r in index.skipped if r == _NOT_IN_LABEL_DIR)
    found = [f"{len(index)} WAVs in label directory {index.labels()[0]!r}"] if index else []
    if loose:
        found.append(f"{loose} WAVs directly in the root")
    raise DataError(f"folder: expected {EXPECTED_LAYOUT['folder']} with one directory per label (at least 2 "
                    f"labels) under {root}; found {' and '.join(found) or 'no WAVs'}. Point --root at the "
                    "directory that holds the label directories, or use --data manifest.")


def _from_filenames(name: str, root: str, parse: Callable[[str, str], Parsed]) -> CorpusIndex:
    """Walk ``root`` for WAVs and parse each name; unparseable ones go to ``skipped``."""
    utts, skipped = [], []
    for path in _wav_files(root):
        if os.path.basename(path).startswith("."):
            skipped.append((path, "hidden file (e.g. macOS ._ metadata)"))
            continue
        kind = _not_regular(path)
        if kind:
            skipped.append((path, kind))
            continue
        parsed = parse(path, root)
        if isinstance(parsed, str):
            skipped.append((path, parsed))
        else:
            utts.append(Utterance(path, parsed[0], parsed[1], name))
    return CorpusIndex(utts, skipped, name, root)


# -- IEMOCAP ---------------------------------------------------------------------------------

# "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]"
_IEMOCAP_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)")
_IEMOCAP_UTT = re.compile(r"^(Ses\d\d)[FM]_.+_([FM])\d+$")


def _iemocap_line(session_dir: str, utt: str, code: str) -> Tuple[str, Parsed]:
    """One EmoEvaluation entry -> (wav path, (label, speaker) or skip reason)."""
    dialog = utt.rsplit("_", 1)[0]
    wav = os.path.join(session_dir, "sentences", "wav", dialog, utt + ".wav")
    m = _IEMOCAP_UTT.match(utt)
    if not m:
        return wav, f"utterance id {utt!r} is not Ses<NN><F|M>_<dialog>_<F|M><NNN>"
    label = IEMOCAP_EMOTIONS.get(code.lower(), "")
    if not label:
        return wav, SKIP_REASONS.get(f"iemocap:{code.lower()}", f"unknown IEMOCAP label {code!r}")
    if not os.path.isfile(wav):
        return wav, "listed in EmoEvaluation but the wav is missing"
    return wav, (label, m.group(1) + m.group(2))


def _load_iemocap(name: str, root: str) -> CorpusIndex:
    """Labels come from the EmoEvaluation transcripts, not from file names."""
    utts, skipped = [], []
    for session_dir in sorted(glob.glob(os.path.join(root, "Session[0-9]*"))):
        pattern = os.path.join(session_dir, "dialog", "EmoEvaluation", "*.txt")
        for txt in sorted(p for p in glob.glob(pattern) if not os.path.basename(p).startswith(".")):
            with open(txt, encoding="utf-8", errors="replace") as f:
                entries = [m.groups() for m in map(_IEMOCAP_LINE.match, f) if m]
            for utt, code in entries:
                wav, parsed = _iemocap_line(os.path.abspath(session_dir), utt, code)
                if isinstance(parsed, str):
                    skipped.append((wav, parsed))
                else:
                    utts.append(Utterance(wav, parsed[0], parsed[1], name))
    return CorpusIndex(utts, skipped, name, root)


# -- manifest --------------------------------------------------------------------------------

MANIFEST_COLUMNS = ("path", "label", "speaker")


def _manifest_file(root: str) -> str:
    """``root`` itself if it is a file, else ``root/manifest.csv``."""
    if os.path.isfile(root):
        return root
    candidate = os.path.join(root, "manifest.csv")
    if not os.path.isfile(candidate):
        raise DataError(f"manifest corpus: no manifest.csv in {root}")
    return candidate


def _manifest_row(row: dict, base: str, where: str, name: str) -> Tuple[str, Union[Utterance, str]]:
    """One CSV row -> (path or location, Utterance or skip reason)."""
    path, label, speaker = ((row.get(k) or "").strip() for k in MANIFEST_COLUMNS)
    if not (path and label and speaker):
        return where, "empty path, label or speaker"
    full = os.path.abspath(os.path.join(base, path))
    if not os.path.isfile(full):
        return full, f"listed at {where} but {_not_regular(full) if os.path.exists(full) else 'not found'}"
    return full, Utterance(full, normalise_label(label), speaker, name)


def _load_manifest(name: str, root: str) -> CorpusIndex:
    csv_path = os.path.abspath(_manifest_file(root))
    base = os.path.dirname(csv_path)
    utts, skipped = [], []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{csv_path}: header must have columns {','.join(MANIFEST_COLUMNS)} "
                                f"(missing {','.join(missing)})")
            for lineno, row in enumerate(reader, start=2):
                where, parsed = _manifest_row(row, base, f"{csv_path}:{lineno}", name)
                if isinstance(parsed, str):
                    skipped.append((where, parsed))
                else:
                    utts.append(parsed)
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{csv_path}: not a readable UTF-8 CSV ({e})") from None
    return CorpusIndex(utts, skipped, name, root)


# -- entry point -----------------------------------------------------------------------------

_LOADERS = {
    "ravdess": _load_ravdess,
    "crema-d": lambda n, r: _from_filenames(n, r, _crema_d),
    "tess": lambda n, r: _from_filenames(n, r, _tess),
    "emodb": lambda n, r: _from_filenames(n, r, _emodb),
    "iemocap": _load_iemocap,
    "folder": lambda n, r: _check_folder_layout(_from_filenames(n, r, _folder), r),
    "manifest": _load_manifest,
}


def corpus_name(name: str) -> str:
    """Canonical corpus name (case-insensitive, a few aliases); :class:`DataError` if unknown."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; known corpora: {', '.join(CORPORA)}")
    return key


def _check_root(name: str, root: str) -> str:
    if not os.path.exists(root):
        raise DataError(f"{name} corpus root not found: {root}")
    if name != "manifest" and not os.path.isdir(root):
        raise DataError(f"{name} corpus root is not a directory: {root}")
    return os.path.abspath(root)


def _no_files_error(index: CorpusIndex, root: str) -> DataError:
    hint = ""
    if index.skipped:
        path, reason = index.skipped[0]
        hint = f"; {len(index.skipped)} files skipped, e.g. {os.path.basename(path)}: {reason}"
    return DataError(f"{index.name}: no usable recordings under {root} "
                     f"(expected {EXPECTED_LAYOUT[index.name]}){hint}")


def load_corpus(name: str, root: Union[str, os.PathLike[str]]) -> CorpusIndex:
    """Index a corpus. ``-> CorpusIndex`` (a ``list[Utterance]`` sorted by path, with ``.skipped``).

    Raises :class:`DataError` for an unknown ``name``, a missing ``root``, or a corpus in which
    nothing usable was found (the message names the expected layout).
    """
    key = corpus_name(name)
    root = _check_root(key, os.fspath(root))
    index = _LOADERS[key](key, root)
    if not index:
        raise _no_files_error(index, root)
    index.sort(key=lambda u: u.path)
    index.skipped.sort()
    return index


def label_counts(utts: Iterable[Utterance]) -> dict:
    """``{label: count}`` sorted by label."""
    counts: dict = {}
    for u in utts:
        counts[u.label] = counts.get(u.label, 0) + 1
    return dict(sorted(counts.items()))


__all__ = ["CORPORA", "EXPECTED_LAYOUT", "CorpusIndex", "Utterance", "corpus_name", "label_counts",
           "load_corpus"]
