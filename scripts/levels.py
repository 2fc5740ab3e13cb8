"""Level robustness of an exported model: top-1 agreement between RAVDESS clips and the same clips
played quieter / louder as 16-bit PCM (ser_edge.robustness.level_agreement), written as JSON for
the model card.

    python scripts/levels.py MODEL ROOT OUT.json [--actors 21,22,23,24] [--gains -20,12]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser_edge.robustness import level_agreement
from ser_edge.runtime.io import atomic_write_json
from ser_edge.runtime.recognizer import Recognizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("root", type=Path)
    ap.add_argument("out")
    ap.add_argument("--actors", default="21,22,23,24")
    ap.add_argument("--gains", default="-20,12")
    args = ap.parse_args()
    paths = sorted(str(p) for a in args.actors.split(",") for p in (args.root / f"Actor_{int(a):02d}").glob("*.wav"))
    result = level_agreement(Recognizer.load(args.model), paths, [float(g) for g in args.gains.split(",")])
    result.update(model=Path(args.model).name, actors=args.actors)
    atomic_write_json(args.out, result)
    for gain, r in result["by_gain"].items():
        print(f"{gain}: same top-1 {100 * r['agreement']:.1f}% of {result['n']} clips ({r['clipped_clips']} clipped)")


if __name__ == "__main__":
    main()
