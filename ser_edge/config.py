"""Training configuration, declared once.

:class:`TrainConfig` is the single source of every training setting: its fields carry their help
text, valid range and choices (``dataclasses.field(metadata=...)``), and from them come

* validation (:meth:`TrainConfig.validate`): one place, one message per problem;
* the ``ser-edge train`` / ``ser-edge cv`` options (``ser_edge.cli.config_options`` generates them, so
  a flag cannot drift from its field);
* recipe files (``--config NAME|PATH``): TOML with a ``[features]``, ``[model]`` and ``[train]``
  table; every key is a field name, unknown keys are refused. Named recipes ship in
  ``ser_edge/recipes/`` (``default.toml`` equals the dataclass defaults; a test keeps them equal);
* the ``train_config`` stored in every checkpoint (``to_dict`` / ``from_dict``).

Precedence: dataclass defaults < recipe file < command-line flags.

The feature and model settings are the runtime's :class:`FeatureConfig` (without statistics:
they are fitted on each run's training speakers) and the core's :class:`ModelConfig` (its
``n_features``/``n_classes`` are filled in from the data), nested, not re-declared.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ser_edge.augment import parse_copy
from ser_edge.data.corpora import CORPORA
from ser_edge.model_config import ARCHITECTURES, ModelConfig
from ser_edge.runtime.errors import SerEdgeError
from ser_edge.runtime.features import BASES, FeatureConfig, FeatureConfigError

#: Where named recipes live (installed with the package).
RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
#: Largest seed accepted (numpy SeedSequence takes any non-negative int; 2**32 - 1 is portable).
MAX_SEED = 2 ** 32 - 1
#: Upper bound for ``--threads`` (more threads than this only adds contention on any edge box).
MAX_THREADS = 64
#: TrainConfig fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = frozenset({"epochs", "resume", "workers", "cache_dir", "progress", "device",
                               "checkpoint_every", "out_dir", "root", "threads", "overwrite"})


class TrainError(SerEdgeError, ValueError):
    """A training configuration or run directory that cannot be used."""


def default_features() -> FeatureConfig:
    """The shipped recipe's features: 40 MFCC + 12 chroma from 64 ms frames every 32 ms, each
    clip's speech level normalised first and everything more than 40 dB below its loudest frame
    floored, so neither the recording level nor the noise floor changes the features (see
    ``ser_edge/recipes/default.toml`` and models/MODEL_CARD.md)."""
    return FeatureConfig(n_fft=1024, win_length=1024, hop_length=512, window="hann", n_mels=64, n_mfcc=40,
                         n_chroma=12, gain_norm_db=-25.0, top_db=40.0)


def default_model() -> ModelConfig:
    """The shipped recipe's model: two conv blocks (96 channels, kernel 5) before a 128-unit LSTM,
    attention + mean pooling."""
    return ModelConfig(arch="conv_lstm", hidden_size=128, num_layers=1, dropout=0.3, conv_channels=96,
                       conv_kernel=5, conv_layers=2)


def setting(default: Any = dataclasses.MISSING, *, help: str, factory: Any = dataclasses.MISSING,
            lo: Optional[float] = None, hi: Optional[float] = None, lo_open: bool = False,
            choices: Optional[Sequence[str]] = None, cli: Optional[Sequence[str]] = None,
            kind: Optional[str] = None) -> Any:
    """A dataclass field with its CLI/validation metadata.

    ``lo``/``hi``: inclusive bounds (``lo_open``: exclusive lower bound); ``choices``: allowed
    strings; ``cli``: option names (default ``--field-name``; an empty tuple hides the field from
    the CLI); ``kind``: how a CLI string becomes the value for tuple fields: ``"csv"`` (names) or
    ``"range"`` (two numbers ``lo,hi``), ``"ratios"`` (three numbers) or ``"specs"`` (strings, possibly
    none)."""
    meta = {"help": help, "lo": lo, "hi": hi, "lo_open": lo_open, "choices": tuple(choices) if choices else None,
            "cli": tuple(cli) if cli is not None else None, "kind": kind}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in every checkpoint it writes."""

    # -- data -----------------------------------------------------------------------------
    data: str = setting("ravdess", help="Corpus layout.", choices=CORPORA, cli=("--data", "-d"))
    root: str = setting("", help="Corpus directory (or manifest CSV).", cli=("--root", "-r"))
    out_dir: str = setting("runs/default", help="Run directory: best.pt, last.pt, history.json, metrics.json.",
                           cli=("--out", "-o"))
    labels: Optional[Tuple[str, ...]] = setting(None, help="Comma-separated label subset (default: all found).",
                                                kind="csv")
    # -- features and model (nested: the runtime's FeatureConfig, the core's ModelConfig) ---
    features: FeatureConfig = setting(help="Feature settings ([features] in a recipe).", factory=default_features,
                                      cli=())
    model: ModelConfig = setting(help="Model settings ([model] in a recipe).", factory=default_model, cli=())
    # -- optimisation -----------------------------------------------------------------------
    epochs: int = setting(150, help="Maximum epochs.", lo=1, hi=10000)
    batch_size: int = setting(32, help="Batch size (per process under torchrun).", lo=1, hi=4096)
    lr: float = setting(1e-3, help="Adam learning rate.", lo=0.0, hi=1.0, lo_open=True)
    weight_decay: float = setting(1e-4, help="Adam weight decay (L2).", lo=0.0, hi=1.0)
    grad_clip: float = setting(1.0, help="Gradient norm clip.", lo=0.0, hi=1e6, lo_open=True)
    label_smoothing: float = setting(0.1, help="Label smoothing.", lo=0.0, hi=0.99)
    class_weights: bool = setting(True, help="Weigh the loss by inverse training-class frequency.")
    scheduler: str = setting("cosine", help="LR schedule: cosine warm restarts (per step) or plateau "
                             "(ReduceLROnPlateau on validation loss).", choices=("cosine", "plateau"))
    cosine_t0: int = setting(10, help="Cosine schedule: epochs of the first cycle.", lo=1, hi=10000)
    cosine_t_mult: int = setting(2, help="Cosine schedule: cycle length multiplier.", lo=1, hi=10)
    lr_patience: int = setting(2, help="Plateau schedule: epochs without improvement before the LR drops.",
                               lo=0, hi=1000)
    lr_factor: float = setting(0.5, help="Plateau schedule: LR multiplier.", lo=0.0, hi=1.0, lo_open=True)
    patience: int = setting(0, help="Early stopping: epochs without validation improvement (0 = off).",
                            lo=0, hi=10000)
    monitor: str = setting("uar", help="Validation metric for the best checkpoint and early stopping.",
                           choices=("uar", "loss"))
    select: str = setting("last", help="Which weights become best.pt: the best validation epoch, or the last "
                          "epoch (fixed-length training, e.g. on all speakers).", choices=("best", "last"))
    # -- augmentation -----------------------------------------------------------------------
    augment: bool = setting(False, help="Waveform augmentation (gain, noise, speed): recomputes the features "
                            "of augmented clips, about 4x the training time.")
    augment_prob: float = setting(0.5, help="Fraction of training clips augmented per epoch.", lo=0.0, hi=1.0)
    gain_db: Tuple[float, float] = setting((-20.0, 20.0), help="Random gain range in dB, e.g. -20,20.",
                                           kind="range")
    noise_snr_db: Tuple[float, float] = setting((10.0, 40.0), help="White-noise SNR range in dB, e.g. 10,40.",
                                                kind="range")
    speed_range: Tuple[float, float] = setting((0.9, 1.1), help="Speed perturbation range, e.g. 0.9,1.1.",
                                               kind="range")
    copies: Tuple[str, ...] = setting(
        ("speed:0.9", "speed:1.1", "noise:15", "noise:30", "band:3400", "reverb:0.4"), kind="specs",
        help="Fixed perturbed copies of every training clip, e.g. speed:0.9,noise:20,band:3400,reverb:0.4 (speed "
             "factor; coloured noise at an SNR in dB; band-limited near a cut-off in Hz; a room with about this "
             "RT60 in s): their features are extracted once and cached; each epoch an item is the clip or one of "
             "its copies, uniformly; none = no copies.")
    spec_augment: int = setting(0, help="SpecAugment: time and feature masks per training item (0 = off).",
                                lo=0, hi=8)
    mixup: float = setting(0.4, help="Mixup Beta(alpha, alpha) on feature batches (0 = off).", lo=0.0, hi=10.0)
    max_frames: int = setting(0, help="Random crop of longer training clips to this many frames (0 = none).",
                              lo=0, hi=1_000_000)
    bucket: bool = setting(True, help="Batch items of similar length together.")
    # -- split ------------------------------------------------------------------------------
    seed: int = setting(0, help="Seed for split, initialisation, batches and augmentation.", lo=0, hi=MAX_SEED)
    ratios: Tuple[float, float, float] = setting((0.8, 0.1, 0.1), help="Speaker shares train,val,test.",
                                                 kind="ratios")
    test_speakers: Optional[Tuple[str, ...]] = setting(None, help="Comma-separated test speakers (fixed).",
                                                       kind="csv")
    val_speakers: Optional[Tuple[str, ...]] = setting(None, help="Comma-separated validation speakers (fixed).",
                                                      kind="csv")
    # -- infrastructure ---------------------------------------------------------------------
    cache_dir: Optional[str] = setting(None, help="Feature cache directory (reused across runs).")
    workers: int = setting(1, help="Feature-extraction processes.", lo=1, hi=MAX_THREADS)
    threads: int = setting(0, help="torch CPU threads per process (0 = torch default).", lo=0, hi=MAX_THREADS)
    device: str = setting("auto", help="Training device.", choices=("auto", "cpu", "cuda"))
    checkpoint_every: int = setting(0, help="Also save last.pt every N steps (0 = at epoch ends).", lo=0,
                                    hi=10_000_000)
    resume: bool = setting(False, help="Continue the run in --out from last.pt.", cli=("--resume",))
    overwrite: bool = setting(False, help="Replace a finished run in --out (best.pt and all).", cli=("--overwrite",))
    progress: bool = setting(True, help="Progress output on stderr.", cli=())

    def __post_init__(self) -> None:
        for name in ("labels", "test_speakers", "val_speakers"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if value is not None:
                setattr(self, name, tuple(str(v) for v in value) or None)
        if isinstance(self.copies, str):
            self.copies = tuple(v.strip() for v in self.copies.split(",") if v.strip())
        elif self.copies is None or isinstance(self.copies, list):
            self.copies = tuple(self.copies or ())
        for name in ("gain_db", "noise_snr_db", "speed_range", "ratios"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                setattr(self, name, tuple(float(v) if _is_number(v) else v for v in value))
        if isinstance(self.features, Mapping):
            self.features = feature_config(self.features)
        if isinstance(self.model, Mapping):
            self.model = model_config(self.model)

    # -- validation -------------------------------------------------------------------------
    def problems(self) -> List[str]:
        """Every reason this config cannot run (empty when it can)."""
        out = []
        for f in dataclasses.fields(self):
            out.extend(_check_field(f, getattr(self, f.name)))
        if not self.root:
            out.append("root (the corpus location) is required")
        if self.resume and self.overwrite:
            out.append("--resume and --overwrite contradict each other")
        for name, n in (("gain_db", 2), ("noise_snr_db", 2), ("speed_range", 2), ("ratios", 3)):
            value = getattr(self, name)
            if not (isinstance(value, tuple) and len(value) == n and all(_finite(v) for v in value)):
                out.append(f"{name} must be {n} finite numbers")
        if not out:
            if not -60 <= self.gain_db[0] <= self.gain_db[1] <= 60:
                out.append("gain_db must satisfy -60 <= low <= high <= 60")
            if not 0 <= self.noise_snr_db[0] <= self.noise_snr_db[1] <= 100:
                out.append("noise_snr_db must satisfy 0 <= low <= high <= 100")
            if not 0.5 <= self.speed_range[0] <= self.speed_range[1] <= 2.0:
                out.append("speed_range must satisfy 0.5 <= low <= high <= 2")
            if min(self.ratios) < 0 or self.ratios[0] <= 0:
                out.append("ratios must be non-negative with a positive training share")
        out.extend(_copy_problems(self.copies))
        if 0 < self.max_frames < 10:
            out.append("max_frames must be >= 10 (or 0 for no crop)")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                out.append("device 'cuda' requested but CUDA is not available")
        return out

    def validate(self) -> None:
        """Raise :class:`TrainError` listing every problem."""
        problems = self.problems()
        if problems:
            raise TrainError("invalid training config: " + "; ".join(problems))

    # -- derived configs --------------------------------------------------------------------
    def feature_config(self) -> FeatureConfig:
        """Raw (unfitted) feature config; stats are fitted on the training split."""
        return dataclasses.replace(self.features, mean=None, std=None)

    def model_config(self, n_features: int, n_classes: int) -> ModelConfig:
        return dataclasses.replace(self.model, n_features=n_features, n_classes=n_classes)

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready; ``features``/``model`` nested as dicts, tuples as lists."""
        d: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "features":
                value = {k: v for k, v in self.feature_config().to_dict().items() if k not in ("mean", "std")}
            elif f.name == "model":
                value = {k: v for k, v in value.to_dict().items() if k not in ("n_features", "n_classes")}
            elif isinstance(value, tuple):
                value = list(value)
            d[f.name] = value
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """From :meth:`to_dict` output or a recipe's flattened ``[train]`` table plus
        ``features``/``model`` dicts. Unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**dict(d))

    @classmethod
    def from_flat(cls, **kw: Any) -> TrainConfig:
        """Keyword arguments naming fields of the config, the feature config or the model config
        (``hidden``/``layers`` accepted for ``hidden_size``/``num_layers``), routed to their place."""
        return cls.from_dict(route_flat(kw))

    def replace(self, **kw: Any) -> TrainConfig:
        """A copy with flat overrides (see :meth:`from_flat`)."""
        return merge(self, route_flat(kw))


def _copy_problems(copies: Any) -> List[str]:
    """Why ``copies`` (``TrainConfig.copies``) is unusable, if it is."""
    if not isinstance(copies, tuple) or not all(isinstance(c, str) for c in copies):
        return [f"copies must be a list of strings like speed:0.9 or noise:20, got {copies!r}"]
    out = []
    for c in copies:
        try:
            parse_copy(c)
        except ValueError as e:
            out.append(str(e))
    if len(set(copies)) != len(copies):
        out.append("copies must not repeat a copy")
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _check_field(f: dataclasses.Field[Any], value: Any) -> Iterator[str]:
    """Problems with one field's value, from its metadata and type."""
    meta, name = f.metadata, f.name
    if not meta or name in ("features", "model"):
        return
    default = f.default if f.default is not dataclasses.MISSING else None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            yield f"{name} must be true or false, got {value!r}"
        return
    if isinstance(default, int) and not isinstance(default, bool):
        if not isinstance(value, int) or isinstance(value, bool):
            yield f"{name} must be an integer, got {value!r}"
            return
    elif isinstance(default, float):
        if not _is_number(value):
            yield f"{name} must be a number, got {value!r}"
            return
        if not math.isfinite(value):
            yield f"{name} must be finite, got {value!r}"
            return
    if meta.get("choices") and value not in meta["choices"]:
        yield f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}"
    lo, hi = meta.get("lo"), meta.get("hi")
    if _is_number(value):
        if lo is not None and (value <= lo if meta.get("lo_open") else value < lo):
            yield f"{name} must be {'>' if meta.get('lo_open') else '>='} {lo:g}, got {value!r}"
        if hi is not None and value > hi:
            yield f"{name} must be <= {hi:g}, got {value!r}"


# ---------------------------------------------------------------------------------------
# Nested configs, flat keys, recipes
# ---------------------------------------------------------------------------------------

#: Short names accepted for model fields (the historical ``--hidden``/``--layers`` flags).
MODEL_ALIASES = {"hidden": "hidden_size", "layers": "num_layers"}
#: FeatureConfig fields a training run may set (mean/std are fitted, schema is the runtime's).
FEATURE_KEYS = tuple(f.name for f in dataclasses.fields(FeatureConfig)
                     if f.name not in ("mean", "std", "schema_version"))
#: FeatureConfig fields that may be off (None; ``"none"`` in a recipe).
OPTIONAL_FEATURES = ("fmax", "top_db", "gain_norm_db")
#: TrainConfig fields that describe a run's place and machine, not its recipe.
INFRA_KEYS = ("data", "root", "out_dir", "labels", "ratios", "test_speakers", "val_speakers", "cache_dir",
              "workers", "threads", "device", "checkpoint_every", "resume", "overwrite", "progress")
#: ModelConfig fields a training run may set (n_features/n_classes come from the data).
MODEL_KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name not in ("n_features", "n_classes"))


def feature_config(d: Mapping[str, Any]) -> FeatureConfig:
    """A raw :class:`FeatureConfig` from recipe/CLI values (``"none"`` for an optional value that
    is off: TOML has no null). Raises :class:`TrainError`."""
    unknown = sorted(set(d) - set(FEATURE_KEYS) - {"schema_version"})
    if unknown:
        raise TrainError(f"unknown feature settings: {', '.join(unknown)} (known: {', '.join(FEATURE_KEYS)})")
    none = {k for k, v in d.items() if k in OPTIONAL_FEATURES and isinstance(v, str) and v.lower() == "none"}
    try:
        return FeatureConfig(**{k: (None if k in none else tuple(v) if isinstance(v, list) else v)
                                for k, v in d.items()})
    except (FeatureConfigError, TypeError) as e:
        raise TrainError(f"invalid feature settings: {e}") from None


def model_config(d: Mapping[str, Any]) -> ModelConfig:
    """A :class:`ModelConfig` template from recipe/CLI values. Raises :class:`TrainError`."""
    d = {MODEL_ALIASES.get(k, k): v for k, v in d.items() if k not in ("n_features", "n_classes")}
    unknown = sorted(set(d) - set(MODEL_KEYS))
    if unknown:
        raise TrainError(f"unknown model settings: {', '.join(unknown)} (known: {', '.join(MODEL_KEYS)})")
    try:
        return ModelConfig(**d)
    except (ValueError, TypeError) as e:
        raise TrainError(f"invalid model settings: {e}") from None


def route_flat(kw: Mapping[str, Any]) -> Dict[str, Any]:
    """``{"hidden": 16, "n_mfcc": 13, "epochs": 3}`` -> ``{"model": {"hidden_size": 16},
    "features": {"n_mfcc": 13}, "epochs": 3}``."""
    out: Dict[str, Any] = {}
    for key, value in kw.items():
        if key in FEATURE_KEYS:
            out.setdefault("features", {})[key] = value
        elif key in MODEL_KEYS or key in MODEL_ALIASES:
            out.setdefault("model", {})[MODEL_ALIASES.get(key, key)] = value
        else:
            out[key] = value
    return out


def merge(base: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """``base`` with ``overrides`` (nested ``features``/``model`` dicts merged key by key)."""
    d = base.to_dict()
    for key, value in overrides.items():
        if key in ("features", "model") and isinstance(value, Mapping):
            d[key] = {**d[key], **value}
        else:
            d[key] = value
    return TrainConfig.from_dict(d)


def recipe_names() -> List[str]:
    """Named recipes shipped with ser-edge (``ser_edge/recipes/*.toml``)."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def recipe_path(name_or_path: str) -> Path:
    """A recipe file: an existing path, or the name of a shipped recipe. Raises :class:`TrainError`."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or os.sep in name_or_path:
        if not p.is_file():
            raise TrainError(f"recipe {name_or_path}: no such file")
        return p
    shipped = RECIPE_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise TrainError(f"unknown recipe {name_or_path!r}; shipped recipes: {', '.join(recipe_names())} "
                         f"(or give a path to a .toml file)")
    return shipped


def _toml_loads(text: str) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python < 3.11
        import tomli as tomllib
    return tomllib.loads(text)


def load_recipe(name_or_path: str) -> Dict[str, Any]:
    """Recipe file -> overrides for :func:`merge`: ``[features]`` and ``[model]`` tables nested,
    ``[train]`` keys at the top level (top-level ``description`` is informative and dropped).
    Raises :class:`TrainError` for unreadable TOML or unknown tables/keys."""
    path = recipe_path(name_or_path)
    try:
        doc = _toml_loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise TrainError(f"recipe {path}: cannot read ({e})") from None
    unknown = sorted(set(doc) - {"description", "features", "model", "train"})
    if unknown:
        raise TrainError(f"recipe {path}: unknown tables/keys {', '.join(unknown)} "
                         f"(expected [features], [model], [train] and an optional description)")
    out: Dict[str, Any] = dict(doc.get("train", {}))
    for section in ("features", "model"):
        if section in doc:
            out[section] = dict(doc[section])
    bad = sorted(set(out) - {f.name for f in dataclasses.fields(TrainConfig)})
    if bad:
        raise TrainError(f"recipe {path}: unknown [train] settings {', '.join(bad)}")
    return out


def build_config(recipe: Optional[str] = None, **flat: Any) -> TrainConfig:
    """Defaults < recipe < ``flat`` overrides (``None`` values mean "not given").
    Raises :class:`TrainError` for unknown or invalid settings (before validation)."""
    cfg = TrainConfig()
    if recipe:
        cfg = merge(cfg, load_recipe(recipe))
    given = {k: v for k, v in flat.items() if v is not None}
    return merge(cfg, route_flat(given)) if given else cfg


def describe(cfg: TrainConfig) -> str:
    """A recipe-shaped TOML rendering of ``cfg`` (for logs, model cards and ``--print-config``)."""
    d = cfg.to_dict()
    lines = ["[features]"] + [f"{k} = {_toml_value('none' if v is None else v)}" for k, v in d["features"].items()
                              if v is not None or k in OPTIONAL_FEATURES]
    lines += ["", "[model]"] + [f"{k} = {_toml_value(v)}" for k, v in d["model"].items()]
    lines += ["", "[train]"] + [f"{k} = {_toml_value(v)}" for k, v in d.items()
                                if k not in ("features", "model") and v is not None]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


__all__ = ["TrainConfig", "TrainError", "setting", "build_config", "load_recipe", "recipe_names", "recipe_path",
           "merge", "route_flat", "describe", "feature_config", "model_config", "RESUMABLE_CHANGES", "BASES",
           "OPTIONAL_FEATURES", "INFRA_KEYS",
           "ARCHITECTURES"]
