"""Copy a trained + exported model into models/ and write its model card from the run's own outputs.

    python scripts/ship_model.py RUN_DIR EXPORT_DIR [--name ser-edge-ravdess] [--bench BENCH_JSON]

RUN_DIR is a `ser-edge train` output (best.pt, metrics.json, metrics_confusion.png, history.json);
EXPORT_DIR a `ser-edge export --quantize` output (parity.json and the artifacts). Every number in
the card is read from those files; nothing is typed by hand. Files are written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

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


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def model_card(name: str, ckpt: dict, metrics: dict, parity: dict, bench: dict | None) -> str:
    extra = ckpt["extra"]
    cfg = extra["train_config"]
    split = extra["split"]
    fcfg = ckpt["feature_config"]
    mcfg = ckpt["model_config"]
    labels = metrics["labels"]
    arts = {a["name"]: a for a in parity["artifacts"] if a.get("role") == "model"}
    lines = [
        f"# Model card: `{name}`",
        "",
        "Speech emotion recognition, 8 classes, from 16 kHz mono speech. Trained by `ser-edge train`,",
        "exported by `ser-edge export --quantize`; every number below is read from the run's",
        "`metrics.json` and the export's `parity.json` by `scripts/ship_model.py`.",
        "",
        "## Intended use and limits",
        "",
        "A small on-device baseline for *acted* English emotional speech. RAVDESS is 24 professional",
        "actors reading two fixed sentences; accuracy on spontaneous speech, other languages,",
        "microphones or noise will be lower. Do not use it for decisions about people.",
        "",
        "## Data and split",
        "",
        "* RAVDESS speech (Livingstone & Russo, 2018), the 16 kHz copy trimmed to 2.389 s per file",
        f"  (1434 files, 24 actors). **Licence: CC BY-NC-SA 4.0**: the model is trained on",
        "  non-commercial data; treat it as research/non-commercial.",
        "* Speaker-independent split by actor (no actor in two parts):",
        f"  * train: {', '.join(split['train'])}",
        f"  * validation (model selection, early stopping): {', '.join(split['val'])}",
        f"  * test (reported below, never used for any choice): {', '.join(split['test'])}",
        "",
        "## Model",
        "",
        f"* `{mcfg['arch']}`: hidden {mcfg['hidden_size']} x {mcfg['num_layers']} layers, dropout {mcfg['dropout']},"
        f" {sum(v.numel() for v in ckpt['state_dict'].values()):,} parameters",
        f"* features: {fcfg['n_mfcc']} MFCC from {fcfg['n_mels']} slaney mel bands, n_fft {fcfg['n_fft']},"
        f" window {fcfg['win_length']} ({fcfg['window']}), hop {fcfg['hop_length']} at {fcfg['sample_rate']} Hz,"
        " per-coefficient normalisation with training-set statistics (embedded in the model)",
        f"* training: Adam lr {cfg['lr']}, weight decay {cfg['weight_decay']}, batch {cfg['batch_size']},"
        f" label smoothing {cfg['label_smoothing']}, class weights {cfg['class_weights']},"
        f" augmentation {cfg['augment']} (p={cfg['augment_prob']}: noise {cfg['noise_snr_db']} dB SNR,"
        f" speed {cfg['speed_range']}), grad clip {cfg['grad_clip']}, ReduceLROnPlateau, early stopping"
        f" (patience {cfg['patience']}), seed {cfg['seed']}; best epoch {extra['epoch']} by validation"
        f" {extra['monitor']} ({extra['val'].get('val_uar', float('nan')):.3f})",
        "",
        "## Results on the held-out test actors",
        "",
        f"**UAR {metrics['uar']:.3f}**, accuracy {metrics['accuracy']:.3f}, weighted F1"
        f" {metrics['weighted_f1']:.3f}, macro F1 {metrics['macro_f1']:.3f} (n = {metrics['n']}, chance UAR 0.125).",
        "",
        "The goal set for this model was UAR >= 0.62 (the published ResLSTM-SA result on a",
        "speaker-independent RAVDESS split). **This model does not reach it.** See README's",
        "'Shipped model' section for what was tried.",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for label in labels:
        pc = metrics["per_class"][label]
        lines.append(f"| {label} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {pc['support']} |")
    lines += ["", f"Confusion matrix (rows = truth, columns = prediction): `{name}.confusion.png`", "",
              "| truth \\ predicted | " + " | ".join(labels) + " |",
              "|---|" + "---:|" * len(labels)]
    for label, row in zip(labels, metrics["confusion_matrix"]):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        "## Files, size, parity and latency",
        "",
        f"Parity against PyTorch fp32 on the same {parity['eval_set'].get('n', '')} test clips"
        f" ({parity['eval_set'].get('description', parity['eval_set'].get('source', ''))}); latency is the export-time"
        " single-thread median for one clip's features on the (shared, noisy) build machine.",
        "",
        "| file | precision | size | max abs logit diff | top-1 agreement | accuracy | weighted F1 | latency |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for src, suffix in SHIP.items():
        a = arts.get(src)
        if a is None:
            continue
        lines.append(f"| `{name}{suffix}` | {a['precision']} | {a['size_bytes'] / 1024:.0f} kB |"
                     f" {a['max_abs_diff']:.1e} | {_pct(a['top1_agreement'])} | {a['accuracy']:.3f} |"
                     f" {a['weighted_f1']:.3f} | {a['latency_ms']:.2f} ms |")
    if bench:
        lines += ["", "`ser-edge bench` on a 2.39 s clip, one thread:", "", "```", json.dumps(bench, indent=2)[:1500], "```"]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        "ser-edge train --data ravdess --root ../shared/data/ravdess-speech-16k --out runs/ship-train \\",
        f"  --arch {mcfg['arch']} --hidden {mcfg['hidden_size']} --layers {mcfg['num_layers']} --dropout {mcfg['dropout']} \\",
        f"  --augment-prob {cfg['augment_prob']} --lr {cfg['lr']} --weight-decay {cfg['weight_decay']}"
        f" --epochs {cfg['epochs']} --patience {cfg['patience']} --seed {cfg['seed']} \\",
        f"  --test-speakers {','.join(split['test'])} --val-speakers {','.join(split['val'])} --threads 1",
        "ser-edge export runs/ship-train/best.pt --out runs/ship-export --quantize \\",
        "  --formats onnx,torchscript,numpy,tflite --data ravdess --root ../shared/data/ravdess-speech-16k",
        "python scripts/ship_model.py runs/ship-train runs/ship-export",
        "```",
        "",
        "Training is seeded and deterministic on one CPU thread (tests/test_train.py checks this).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--name", default="ser-edge-ravdess")
    ap.add_argument("--out", type=Path, default=REPO / "models")
    ap.add_argument("--bench", type=Path, default=None)
    args = ap.parse_args()
    ckpt = torch.load(args.run_dir / "best.pt", map_location="cpu", weights_only=True)
    metrics = json.loads((args.run_dir / "metrics.json").read_text())
    parity = json.loads((args.export_dir / "parity.json").read_text())
    if not parity.get("passed") or not parity.get("gates_enforced", True):
        raise SystemExit("refusing to ship: the export did not pass its parity gates")
    for src, suffix in SHIP.items():
        if (args.export_dir / src).exists():
            _copy(args.export_dir / src, args.out / f"{args.name}{suffix}")
    _copy(args.run_dir / "best.pt", args.out / f"{args.name}.pt")
    _copy(args.run_dir / "metrics_confusion.png", args.out / f"{args.name}.confusion.png")
    _copy(args.export_dir / "parity.json", args.out / f"{args.name}.parity.json")
    bench = json.loads(args.bench.read_text()) if args.bench else None
    atomic_write_text(args.out / "MODEL_CARD.md", model_card(args.name, ckpt, metrics, parity, bench))
    print(f"shipped {args.name} to {args.out}: UAR {metrics['uar']:.3f} on {', '.join(metrics['speakers'])}")
    os.sync()


if __name__ == "__main__":
    main()
