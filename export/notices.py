"""Third-party warnings raised while exporting, collected instead of printed.

torch's ONNX exporter, TorchScript, ``torch.ao`` quantization and onnxruntime's quantizer print
warnings a user cannot act on (an LSTM batch-size caveat the export already handles, a
pre-processing hint, deprecations of paths kept on purpose). :func:`collect_warnings` records
them, and every WARNING log record, while an export runs; ``parity.json`` keeps their full text
and the CLI prints one summary line (``--verbose``: the full text). Deprecations are named in
that line, so they stay visible.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, List, Tuple

#: Categories that announce a removal: always named in the summary line.
DEPRECATIONS = ("DeprecationWarning", "PendingDeprecationWarning", "FutureWarning")


@dataclass
class Notice:
    """One distinct warning: ``category`` (a warning class name, or ``log.WARNING`` for a log
    record), ``source`` (the warning's module or the logger's name), the full ``message`` and how
    many times it was raised."""

    category: str
    source: str
    message: str
    count: int = 1

    @property
    def is_deprecation(self) -> bool:
        return self.category in DEPRECATIONS or "deprecat" in self.message.lower()

    @property
    def headline(self) -> str:
        """The message's first sentence, at most 60 characters."""
        text = self.message.strip() or self.category
        first = text.splitlines()[0].split(". ")[0].rstrip(".")
        return first if len(first) <= 60 else first[:57] + "..."

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


class _Collector(logging.Handler):
    def __init__(self, sink: List[Tuple[str, str, str]]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append((f"log.{record.levelname}", record.name, record.getMessage()))


@contextmanager
def collect_warnings() -> Iterator[List[Notice]]:
    """Within the block, record every ``warnings.warn`` (including those Python hides by default)
    and every WARNING-or-worse record reaching the root logger, instead of printing them. The
    yielded list is filled, de-duplicated in first-seen order, when the block exits."""
    raw: List[Tuple[str, str, str]] = []
    notices: List[Notice] = []
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    # Our handler only: a library calling logging.warning() would otherwise install a stderr
    # handler on the root logger (logging.basicConfig) and print.
    root.handlers = [_Collector(raw)]
    root.setLevel(min(saved_level or logging.WARNING, logging.WARNING))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield notices
            finally:
                raw[:0] = [(w.category.__name__, _module_of(w.filename), str(w.message)) for w in caught]
    finally:
        root.handlers, root.level = saved_handlers, saved_level
        notices.extend(_dedupe(raw))


def summary_line(notices: List[Notice]) -> str:
    """One line for the terminal, e.g. ``3 third-party warnings (2 deprecations: ...)``; empty when
    there are none."""
    if not notices:
        return ""
    total = sum(n.count for n in notices)
    deps = list(dict.fromkeys(n.headline for n in notices if n.is_deprecation))
    line = (f"{total} third-party warning{'s' if total != 1 else ''} during export, kept in parity.json "
            "(--verbose prints them)")
    if deps:
        line += f"; {len(deps)} deprecation{'s' if len(deps) != 1 else ''}: {' | '.join(deps)}"
    return line


def _dedupe(raw: List[Tuple[str, str, str]]) -> List[Notice]:
    seen: Dict[Tuple[str, str, str], Notice] = {}
    for key in raw:
        if key in seen:
            seen[key].count += 1
        else:
            seen[key] = Notice(*key)
    return list(seen.values())


def _module_of(filename: str) -> str:
    """``.../site-packages/torch/onnx/utils.py`` -> ``torch.onnx.utils``; elsewhere the last two
    path parts (``export/onnx_export.py`` -> ``export.onnx_export``: a warning raised on our call)."""
    parts = filename.replace("\\", "/").rsplit(".py", 1)[0].split("/")
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            return ".".join(parts[parts.index(anchor) + 1:])
    return ".".join(parts[-2:])
