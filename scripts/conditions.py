"""Robustness of an exported model to other recording chains (telephone band, low-pass, brighter
and duller microphones, noise, reverb; ser_edge.robustness.CONDITIONS) on RAVDESS actors: UAR,
agreement with the clean clip and label spread per chain, printed and written as JSON.

    python scripts/conditions.py MODEL ROOT OUT.json [--actors 21,22,23,24]
"""

from __future__ import annotations

import argparse

from ser_edge.data import load_corpus
from ser_edge.robustness import condition_report
from ser_edge.runtime.io import atomic_write_json
from ser_edge.runtime.recognizer import Recognizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("root")
    ap.add_argument("out")
    ap.add_argument("--actors", default="21,22,23,24", help="comma-separated actor numbers")
    args = ap.parse_args()
    wanted = {f"Actor_{int(a):02d}" for a in args.actors.split(",")}
    utts = sorted((u for u in load_corpus("ravdess", args.root) if u.speaker in wanted), key=lambda u: u.path)
    rec = Recognizer.load(args.model)
    result = condition_report(rec, [u.path for u in utts], [u.label for u in utts])
    result.update(model=args.model, actors=args.actors)
    atomic_write_json(args.out, result)
    print(f"clean: UAR {result['clean']['uar']:.3f}, largest class share {result['clean']['max_share']:.2f}")
    for name, r in result["conditions"].items():
        print(f"{name}: UAR {r['uar']:.3f}, same top-1 {100 * r['agreement']:.0f}%, "
              f"largest class share {r['max_share']:.2f}, {r['classes_predicted']} classes predicted")


if __name__ == "__main__":
    main()
