"""Typer options generated from the training configuration, so a flag cannot drift from its field.

Every field of :class:`ser_edge.config.TrainConfig` (and of the nested feature and model
configs) becomes one option whose default is ``None`` = "not given": the value then comes from
the recipe (``--config``) or the dataclass default. Help text, ranges and choices come from the
field's metadata; fixed choices become Enums, so ``--help`` lists them.

Only typer and the standard library are imported at module level; the config module (which
imports torch via the model definitions) is imported when a command is registered.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import typer
from typing_extensions import Annotated

#: Help for feature fields (the FeatureConfig dataclass lives in the numpy-only runtime, which
#: carries no CLI metadata).
FEATURE_HELP: Dict[str, Tuple[str, Optional[Sequence[str]]]] = {
    "sample_rate": ("Feature sample rate (Hz); audio is resampled to it.", None),
    "n_fft": ("FFT size (samples).", None),
    "win_length": ("Analysis window length (samples, <= n_fft).", None),
    "hop_length": ("Frame hop (samples).", None),
    "window": ("Analysis window.", ("hamming", "hann")),
    "n_mels": ("Mel bands.", None),
    "n_mfcc": ("MFCC coefficients (base mfcc).", None),
    "fmin": ("Lowest mel frequency (Hz).", None),
    "fmax": ("Highest mel frequency (Hz; default sample_rate / 2).", None),
    "top_db": ("Log-mel floor below the clip's peak (dB).", None),
    "base": ("Base features: MFCC or log-mel.", ("mfcc", "logmel")),
    "n_chroma": ("Chroma bins appended (0 = none).", None),
    "deltas": ("Append delta (1) or delta + delta-delta (2) of the base features.", None),
    "delta_width": ("Delta window (odd frames).", None),
    "gain_norm_db": ("Normalise each clip's active speech level to this dBFS before features.", None),
    "speaker_norm": ("Normalise features per speaker (each speaker's own mean/std; at inference from the "
                     "speaker's unlabelled audio, see `ser-edge predict --adapt`).", None),
}
MODEL_HELP: Dict[str, Tuple[str, Optional[Sequence[str]], Tuple[str, ...]]] = {
    "arch": ("Architecture.", None, ("--arch",)),
    "hidden_size": ("LSTM hidden size.", None, ("--hidden-size", "--hidden")),
    "num_layers": ("LSTM layers (lstm, attn_bilstm, conv_lstm).", None, ("--num-layers", "--layers")),
    "dropout": ("Dropout.", None, ("--dropout",)),
    "conv_channels": ("conv_lstm: channels of each conv block.", None, ("--conv-channels",)),
    "conv_kernel": ("conv_lstm: kernel size in frames (odd).", None, ("--conv-kernel",)),
    "conv_layers": ("conv_lstm: conv blocks.", None, ("--conv-layers",)),
}


@functools.cache
def choice_enum(name: str, choices: Tuple[str, ...]) -> Any:
    """A ``str`` Enum whose values are ``choices`` (typer lists them in ``--help``)."""
    return enum.Enum(name, {c.replace("-", "_"): c for c in choices}, type=str)


def _option(name: str, default: Any, help: str, names: Sequence[str], choices: Optional[Sequence[str]] = None,
            lo: Any = None, hi: Any = None, lo_open: bool = False, kind: Optional[str] = None,
            panel: str = "Training", switch: bool = False) -> inspect.Parameter:
    """One keyword-only parameter ``name: Annotated[Optional[T], typer.Option(...)] = None``."""
    kw: Dict[str, Any] = {"help": help, "rich_help_panel": panel, "show_default": False}
    if isinstance(default, bool) and switch:
        typ: Any = Optional[bool]  # a plain switch (--resume): there is no --no-resume
    elif isinstance(default, bool):
        names = tuple(f"{n}/--no-{n[2:]}" for n in names[:1]) + tuple(names[1:])
        typ = Optional[bool]
    elif choices:
        typ = Optional[choice_enum(name.title().replace("_", ""), tuple(choices))]
    elif kind is not None:
        typ = Optional[str]
    elif isinstance(default, int):
        typ = Optional[int]
        kw.update(min=lo, max=hi)
    elif isinstance(default, float) or name in ("fmax", "top_db", "gain_norm_db"):
        typ = Optional[float]
        kw.update(min=None if lo_open else lo, max=hi)  # an open bound is checked by TrainConfig
    else:
        typ = Optional[str]
    if default is not None and not isinstance(default, (tuple, list)) and not isinstance(default, bool):
        kw["help"] = f"{help} [default: {default}]"
    elif isinstance(default, tuple):
        kw["help"] = f"{help} [default: {','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in default)}]"
    elif isinstance(default, bool):
        kw["help"] = f"{help} [default: {'yes' if default else 'no'}]"
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[typ, typer.Option(*names, **{k: v for k, v in kw.items()
                                                                               if v is not None})])


def config_parameters(exclude: Sequence[str] = ()) -> List[inspect.Parameter]:
    """``--config`` plus one option per training, feature and model setting."""
    from ser_edge.config import FEATURE_KEYS, MODEL_KEYS, TrainConfig, recipe_names
    from ser_edge.model_config import ARCHITECTURES

    params = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Optional[str], typer.Option("--config", "-c", rich_help_panel="Recipe",
                                    help=f"Recipe: a shipped name ({', '.join(recipe_names())}) or a .toml "
                                         f"file; flags override it.")])]
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if meta.get("cli") == () or f.name in exclude:
            continue
        names = meta.get("cli") or (f"--{f.name.replace('_', '-')}",)
        params.append(_option(f.name, f.default, meta["help"], names, meta.get("choices"), meta.get("lo"),
                              meta.get("hi"), meta.get("lo_open", False), meta.get("kind"),
                              switch=meta.get("cli") is not None))
    feature_defaults = TrainConfig().features
    for key in FEATURE_KEYS:
        help_text, choices = FEATURE_HELP[key]
        params.append(_option(key, getattr(feature_defaults, key), help_text, (f"--{key.replace('_', '-')}",),
                              choices, panel="Features"))
    model_defaults = TrainConfig().model
    for key in MODEL_KEYS:
        help_text, choices, names = MODEL_HELP[key]
        params.append(_option(key, getattr(model_defaults, key), help_text, names,
                              ARCHITECTURES if key == "arch" else choices, panel="Model"))
    return params


def parse_value(name: str, value: Any) -> Any:
    """A CLI value as the config field wants it: Enum -> str, ``"a,b"`` -> tuple."""
    from ser_edge.config import TrainConfig

    if isinstance(value, enum.Enum):
        return value.value
    kinds = {f.name: f.metadata.get("kind") for f in dataclasses.fields(TrainConfig)}
    kind = kinds.get(name)
    if kind is None or not isinstance(value, str):
        return value
    parts = [v.strip() for v in value.split(",") if v.strip()]
    if kind == "csv":
        return tuple(parts) or None
    if kind == "specs":  # a list that may be empty: "" or "none" = no items
        return () if [p.lower() for p in parts] in ([], ["none"]) else tuple(parts)
    try:
        numbers = tuple(float(v) for v in parts)
    except ValueError:
        raise typer.BadParameter(f"expected numbers separated by commas, got {value!r}",
                                 param_hint=f"--{name.replace('_', '-')}") from None
    want = 3 if kind == "ratios" else 2
    if len(numbers) != want:
        raise typer.BadParameter(f"expected {want} numbers separated by commas, got {value!r}",
                                 param_hint=f"--{name.replace('_', '-')}")
    return numbers


def with_config_options(extra: Sequence[inspect.Parameter], exclude: Sequence[str] = ()) -> Callable[
        [Callable[..., None]], Callable[..., None]]:
    """Decorate ``fn(config_values: dict, recipe: str | None, **extra)`` into a typer command whose
    signature is ``extra`` + the generated config options."""

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        params = list(extra) + config_parameters(exclude)
        extra_names = {p.name for p in extra}

        @functools.wraps(fn)
        def command(**kwargs: Any) -> None:
            recipe = kwargs.pop("config", None)
            given = {k: parse_value(k, v) for k, v in kwargs.items() if k not in extra_names and v is not None}
            fn(given, recipe, **{k: kwargs[k] for k in extra_names})

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer must read the generated signature, not fn's
        return command

    return wrap


__all__ = ["config_parameters", "with_config_options", "parse_value", "choice_enum"]
