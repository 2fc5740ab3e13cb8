"""Copy a trained + exported model into models/ and write its model card from the runs' own outputs.

    python scripts/ship_model.py --run RUN_DIR --export EXPORT_DIR --cv CV_DIR \\
        [--baseline "NAME=CV_DIR" ...] [--tried "NAME=CV_DIR" ...] [--levels LEVELS_JSON]
        [--heldout-levels "NAME=LEVELS_JSON" ...] [--heldout-conditions "NAME=CONDITIONS_JSON" ...]
        [--commands COMMANDS_JSON] [--name ser-edge-ravdess]

RUN_DIR: the `ser-edge train` run that produced the shipped weights (best.pt, history.json);
EXPORT_DIR: its `ser-edge export --quantize` output (parity.json and the artifacts);
CV_DIR: `ser-edge cv` of the same recipe (cv.json, cv_confusion.png) = the expected accuracy;
--baseline: other recipes cross-validated in the same harness, for the comparison table;
--tried: variants of the shipped recipe cross-validated while choosing it (same harness);
--levels: `scripts/levels.py` output (level robustness of the exported int8 model);
--heldout-levels: the same check on fold models and their own held-out actors;
--heldout-conditions: `scripts/conditions.py` output (other recording chains) of fold models on their
    own held-out actors;
--commands: {"step": "command"} exactly as run, for the Reproduce section.
Every number in the card is read from those files; nothing is typed by hand. Files are written
atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ser_edge.runtime.io import atomic_path, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
SHIP = {  # artifact in the export dir -> suffix in models/
    "model.onnx": ".onnx",
    "model.int8.onnx": ".int8.onnx",
    "model.npz": ".npz",
    "model.int8.tflite": ".int8.tflite",
    "model.int8.tflite.json": ".int8.tflite.json",
}
#: Published and previously reproduced figures (speaker-independent, 8 classes), for context only.
ANCHORS = [
    ("ResLSTM-SA-h64 (Mak-Sim/ResLSTM-SER, DSPA 2026), 5-fold actor CV, 10 runs, published", "0.623 +- 0.012"),
    ("attention-LSTM h128 in the same published harness", "0.590"),
    ("ComParE features + logistic regression, leave-one-actor-out, published", "0.636"),
    ("utterance functionals + RBF SVM, 5-fold actor CV (issue 8's reproduction, outside ser-edge)",
     "0.483 +- 0.041"),
]


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _slug(label: str) -> str:
    """A file name for a table row's label."""
    return "-".join("".join(c if c.isalnum() else " " for c in label.lower()).split())[:60]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _cv_row(name: str, cv: dict) -> str:
    int8 = cv.get("int8")
    return (f"| {name} | {cv['uar_mean']:.3f} +- {cv['uar_std']:.3f} | {cv['accuracy_mean']:.3f} |"
            f" {cv['weighted_f1_mean']:.3f} | {len(cv['folds'])} |"
            + (f" {int8['uar_mean']:.3f} |" if int8 else " - |"))


def _paired(cv: dict, other: dict) -> str:
    """Mean +- std over folds of (shipped - other) UAR, folds matched by their test speakers."""
    mine = {tuple(f["test_speakers"]): f["metrics"]["uar"] for f in cv["folds"]}
    diffs = [mine[k] - f["metrics"]["uar"] for f in other["folds"] if (k := tuple(f["test_speakers"])) in mine]
    if not diffs:
        return "-"
    mean = sum(diffs) / len(diffs)
    std = (sum((d - mean) ** 2 for d in diffs) / len(diffs)) ** 0.5
    return f"{mean:+.3f} +- {std:.3f}"


def model_card(name: str, ckpt: dict, history: dict, parity: dict, cv: dict, baselines: Dict[str, dict],
               levels: Optional[dict], commands: Dict[str, str], tried: Optional[Dict[str, dict]] = None,
               heldout_levels: Optional[Dict[str, dict]] = None,
               heldout_conditions: Optional[Dict[str, dict]] = None) -> str:
    extra = ckpt["extra"]
    cfg = extra["train_config"]
    fcfg = ckpt["feature_config"]
    mcfg = ckpt["model_config"]
    labels = cv["labels"]
    pooled = cv["pooled"]
    arts = {a["name"]: a for a in parity["artifacts"] if a.get("role") == "model"}
    n_params = sum(v.numel() for v in ckpt["state_dict"].values() if v.is_floating_point())
    feats = [f"{fcfg['n_mfcc']} MFCC" if fcfg.get("base", "mfcc") == "mfcc" else f"{fcfg['n_mels']} log-mel bands"]
    if fcfg.get("deltas"):
        feats.append("deltas" + (" and delta-deltas" if fcfg["deltas"] == 2 else ""))
    if fcfg.get("n_chroma"):
        feats.append(f"{fcfg['n_chroma']} chroma (0 on frames more than top_db below the loudest)")
    n_val = cv["recipe"]["cv"]["val_speakers_per_fold"]
    aug = (f"waveform augmentation (p = {cfg['augment_prob']}): gain {cfg['gain_db']} dB and white noise"
           f" {cfg['noise_snr_db']} dB SNR through 16-bit PCM, speed {cfg['speed_range']}"
           if cfg["augment"] else "waveform augmentation off")
    if cfg.get("copies"):
        aug += (f"; cached training copies of every clip ({', '.join(cfg['copies'])}: speed factor, coloured"
                " noise SNR in dB, band-limit cut-off in Hz, room RT60 in s; `ser_edge.augment.perturb_copy`),"
                " each epoch an item being the clip or one copy, uniformly")
    lines = [
        f"# Model card: `{name}`",
        "",
        "Speech emotion recognition, 8 classes (neutral, calm, happy, sad, angry, fearful, disgust,",
        "surprised), from speech at any sample rate (resampled to 16 kHz). Trained by `ser-edge train`,",
        "exported by `ser-edge export --quantize`, its expected accuracy measured by `ser-edge cv`; every",
        "number below is read from those runs' files by `scripts/ship_model.py`.",
        "",
        "## Intended use and limits",
        "",
        "A small on-device model for *acted* emotional speech. RAVDESS is 24 professional North-American",
        "actors reading two fixed English sentences: accuracy on spontaneous speech, other languages,",
        "accents, microphones or noise will be lower, and the eight categories are a coarse, acted",
        "taxonomy. Do not use it for decisions about people.",
        "",
        "**Licence of the training data: CC BY-NC-SA 4.0** (RAVDESS, Livingstone & Russo 2018): treat",
        "the model as research / non-commercial.",
        "",
        "## How it was trained",
        "",
        "* Data: the complete RAVDESS speech set (1440 clips, 24 actors, untrimmed 16 kHz copy), **all 24",
        f"  actors**, for the fixed {cfg['epochs']} epochs that cross-validation used; the weights of the last",
        "  epoch are shipped (no test speakers are left: the expected accuracy on new voices is the",
        "  cross-validation estimate below, not a number measured on this model).",
        f"* Model: `{mcfg['arch']}`, {n_params:,} parameters (hidden {mcfg['hidden_size']}"
        + (f", {mcfg['conv_layers']} conv blocks of {mcfg['conv_channels']} channels, kernel {mcfg['conv_kernel']}"
           if mcfg["arch"] == "conv_lstm" else "") + f", dropout {mcfg['dropout']}).",
        f"* Features: {', '.join(feats)} per {fcfg['hop_length'] / fcfg['sample_rate'] * 1000:.0f} ms hop"
        f" ({fcfg['n_fft']}-point {fcfg['window']} window, {fcfg['n_mels']} slaney mel bands, 16 kHz,"
        f" log-mel floored {fcfg['top_db']:g} dB below the clip's loudest value)"
        + (f", each clip's active speech level normalised to {fcfg['gain_norm_db']:g} dBFS first"
           if fcfg.get("gain_norm_db") is not None else "")
        + "; per-feature mean/std from the training clips, embedded in the model.",
        f"* Optimisation: Adam lr {cfg['lr']}, weight decay {cfg['weight_decay']}, batch {cfg['batch_size']},"
        f" {cfg['scheduler']} schedule (T0 {cfg['cosine_t0']}, x{cfg['cosine_t_mult']}), label smoothing"
        f" {cfg['label_smoothing']}, class weights {cfg['class_weights']}, gradient clip {cfg['grad_clip']},"
        f" seed {cfg['seed']}.",
        f"* Regularisation: dropout, mixup alpha {cfg['mixup']}, SpecAugment masks {cfg['spec_augment']}; {aug}.",
        "* The whole recipe is `ser_edge/recipes/default.toml`, which `ser-edge train` uses by default.",
        "",
        "## Expected accuracy: speaker-independent cross-validation",
        "",
        f"{cv['n_folds']}-fold cross-validation by actor (fold k tests actors k, k+5, k+10, ...; no actor is in",
        "two parts of a fold; "
        + (f"{n_val} validation actors per fold come from its training actors" if n_val else
           "no validation actors: every fold trains the recipe's fixed epochs and keeps the last, as the"
           " shipped model does") + "), same harness for every row. Chance UAR is 0.125. The last column"
        " is the paired difference per fold (shipped minus that row, same test actors).",
        "",
        "| recipe (ser-edge cv) | UAR mean +- std | accuracy | weighted F1 | folds | int8 ONNX UAR"
        " | shipped minus row |",
        "|---|---:|---:|---:|---:|---:|---:|",
        _cv_row(f"**{name} recipe (shipped)**", cv) + " - |",
    ]
    lines += [_cv_row(n, b) + f" {_paired(cv, b)} |" for n, b in baselines.items()]
    lines += ["", "Published / earlier figures, for context (not run in this harness):", "",
              "| system | UAR |", "|---|---:|"] + [f"| {a} | {u} |" for a, u in ANCHORS]
    if tried:
        lines += ["", "Variants of the shipped recipe cross-validated while choosing it (same folds; choosing among",
                  "them on these folds makes the chosen row slightly optimistic):", "",
                  "| variant | UAR mean +- std | accuracy | weighted F1 | folds | int8 ONNX UAR | shipped minus row |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [_cv_row(n, b) + f" {_paired(cv, b)} |" for n, b in tried.items()]
        adapted = {n: b["adapted"] for n, b in tried.items() if b.get("adapted")}
        for n, a in adapted.items():
            lines += ["", f"Speaker adaptation ({n}): with each test actor's own unlabelled clips giving the feature",
                      f"normalisation, UAR {a['uar_mean']:.3f} +- {a['uar_std']:.3f}; without it (the population"
                      f" statistics, as a single clip is served) {tried[n]['uar_mean']:.3f}"
                      f" +- {tried[n]['uar_std']:.3f}."]
    lines += ["", "Per fold (shipped recipe):", "",
              "| fold | test actors | UAR | accuracy | weighted F1 | int8 UAR |", "|---:|---|---:|---:|---:|---:|"]
    for f in cv["folds"]:
        m, q = f["metrics"], f.get("int8")
        lines.append(f"| {f['fold'] + 1} | {', '.join(s.replace('Actor_', '') for s in f['test_speakers'])} |"
                     f" {m['uar']:.3f} | {m['accuracy']:.3f} | {m['weighted_f1']:.3f} |"
                     + (f" {q['uar']:.3f} |" if q else " - |"))
    lines += ["", "Per-class scores pooled over all folds' test predictions (`cv_confusion.png`):", "",
              "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for label in labels:
        pc = pooled["per_class"][label]
        lines.append(f"| {label} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {pc['support']} |")
    lines += ["", f"Pooled confusion matrix (rows = truth, columns = prediction): `{name}.confusion.png`", "",
              "| truth \\ predicted | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for label, row in zip(labels, pooled["confusion_matrix"]):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    if levels:
        lines += ["", "## Recording level", "",
                  f"Top-1 agreement of `{levels['model']}` between each clip of actors 21-24 ({levels['n']} clips)"
                  " and the same clip played at another level as 16-bit PCM (rounded, clipped):", "",
                  "| level change | same top-1 | clips with > 0.1 % samples clipped |", "|---|---:|---:|"]
        for gain, r in levels["by_gain"].items():
            lines.append(f"| {gain} | {_pct(r['agreement'])} | {r['clipped_clips']} |")
        lines += ["", "(These actors are in the shipped model's training data; the check measures invariance"
                  " to level, not accuracy.)"]
    if heldout_levels:
        lines += ["", "The same check on held-out voices: each recipe's fold-1 model on its own test actors:", "",
                  "| model | clips | same top-1 at -20 dB | same top-1 at +12 dB |", "|---|---:|---:|---:|"]
        for n, lv in heldout_levels.items():
            g = lv["by_gain"]
            lines.append(f"| {n} | {lv['n']} | {_pct(g['-20 dB']['agreement'])} | {_pct(g['+12 dB']['agreement'])} |")
    if heldout_conditions:
        first = next(iter(heldout_conditions.values()))
        names = list(first["conditions"])
        lines += ["", "## Other recording chains", "",
                  "Other corpora differ from RAVDESS in microphone, band, noise and room. Each recipe's fold-1 model"
                  f" on its own held-out actors ({first['n']} clips), each clip played through another chain"
                  " (`scripts/conditions.py`, `ser_edge.robustness.CONDITIONS`): UAR / same top-1 as the clean"
                  " clip / largest share of one class among the predictions (1.0 = collapsed onto one class)."
                  " Recipes with `band`, `noise` or `reverb` copies trained on perturbations of the same families"
                  " (other parameters, drawn per clip), so expect less on real recordings of those kinds.", "",
                  "| model | clean UAR | " + " | ".join(names) + " |", "|---|---:|" + "---|" * len(names)]
        for n, c in heldout_conditions.items():
            cells = [f"{r['uar']:.2f} / {_pct(r['agreement'])} / {r['max_share']:.2f}"
                     for r in (c["conditions"][k] for k in names)]
            lines.append(f"| {n} | {c['clean']['uar']:.3f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Files, size, parity",
        "",
        f"Parity against PyTorch fp32 on {parity['eval_set'].get('n', '')} clips"
        f" ({parity['eval_set'].get('description', parity['eval_set'].get('source', ''))}).",
        "",
        "| file | precision | size | max abs logit diff | top-1 agreement |",
        "|---|---|---:|---:|---:|",
    ]
    for src, suffix in SHIP.items():
        a = arts.get(src)
        if a is not None:
            lines.append(f"| `{name}{suffix}` | {a['precision']} | {a['size_bytes'] / 1024:.0f} kB |"
                         f" {a['max_abs_diff']:.1e} | {_pct(a['top1_agreement'])} |")
    lines += ["", "## Reproduce", "", "Each command as it was run (2-core x86 VM, one torch thread):", "", "```bash"]
    lines += [f"# {step}\n{cmd}" for step, cmd in commands.items()]
    lines += ["```", "", "Training is seeded and deterministic on one CPU thread (tests/test_train.py checks this).",
              ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--export", type=Path, required=True)
    ap.add_argument("--cv", type=Path, required=True)
    ap.add_argument("--baseline", action="append", default=[])
    ap.add_argument("--tried", action="append", default=[])
    ap.add_argument("--levels", type=Path, default=None)
    ap.add_argument("--heldout-levels", action="append", default=[])
    ap.add_argument("--heldout-conditions", action="append", default=[])
    ap.add_argument("--commands", type=Path, default=None)
    ap.add_argument("--name", default="ser-edge-ravdess")
    ap.add_argument("--out", type=Path, default=REPO / "models")
    args = ap.parse_args()
    ckpt = torch.load(args.run / "best.pt", map_location="cpu", weights_only=True)
    history = json.loads((args.run / "history.json").read_text())
    parity = json.loads((args.export / "parity.json").read_text())
    if not parity.get("passed") or not parity.get("gates_enforced", True):
        raise SystemExit("refusing to ship: the export did not pass its parity gates")
    cv = json.loads((args.cv / "cv.json").read_text())
    baselines: Dict[str, dict] = {}
    for spec in args.baseline:
        label, _, path = spec.partition("=")
        baselines[label] = json.loads((Path(path) / "cv.json").read_text())
    tried: Dict[str, dict] = {}
    for spec in args.tried:
        label, _, path = spec.partition("=")
        tried[label] = json.loads((Path(path) / "cv.json").read_text())
    heldout: Dict[str, dict] = {}
    for spec in args.heldout_levels:
        label, _, path = spec.partition("=")
        heldout[label] = json.loads(Path(path).read_text())
    conditions: Dict[str, dict] = {}
    for spec in args.heldout_conditions:
        label, _, path = spec.partition("=")
        conditions[label] = json.loads(Path(path).read_text())
    levels = json.loads(args.levels.read_text()) if args.levels else None
    commands = json.loads(args.commands.read_text()) if args.commands else {}
    for src, suffix in SHIP.items():
        if (args.export / src).exists():
            _copy(args.export / src, args.out / f"{args.name}{suffix}")
    _copy(args.run / "best.pt", args.out / f"{args.name}.pt")
    _copy(args.cv / "cv_confusion.png", args.out / f"{args.name}.confusion.png")
    _copy(args.export / "parity.json", args.out / f"{args.name}.parity.json")
    _copy(args.cv / "cv.json", args.out / "cv.json")
    # every compared CV beside it (a few kB each), so the card can be rebuilt after runs/ is gone
    for spec in args.baseline + args.tried:
        label, _, path = spec.partition("=")
        _copy(Path(path) / "cv.json", args.out / "cv" / f"{_slug(label)}.json")
    atomic_write_text(args.out / "MODEL_CARD.md",
                      model_card(args.name, ckpt, history, parity, cv, baselines, levels, commands, tried, heldout,
                                 conditions))
    print(f"shipped {args.name} to {args.out}: CV UAR {cv['uar_mean']:.3f} +- {cv['uar_std']:.3f}")
    os.sync()


if __name__ == "__main__":
    main()


__all__: List[str] = ["model_card", "main"]
