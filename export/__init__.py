"""Export stage: a checkpoint becomes checked, parity-gated models for the runtime.

``export_all(checkpoint, out_dir, formats, quantize, eval_data, gate) -> ExportReport``; see
:mod:`ser_edge.export.pipeline`. Importing this package imports torch.
"""

from .errors import ExportError, GateFailure
from .parity import GATES, EvalSet, eval_set_from_corpus, eval_set_from_utterances, synthetic_eval_set
from .pipeline import DEFAULT_FORMATS, FORMATS, PARITY_FILE, ExportReport, export_all, parse_formats

__all__ = [
    "ExportError", "GateFailure", "GATES", "EvalSet", "eval_set_from_corpus", "eval_set_from_utterances",
    "synthetic_eval_set", "DEFAULT_FORMATS", "FORMATS", "PARITY_FILE", "ExportReport", "export_all",
    "parse_formats",
]
