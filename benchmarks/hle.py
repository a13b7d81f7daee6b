"""HLE (arXiv 2308.14374) vs ER on online hierarchical label expansion streams, per hierarchy level.

    .venv/bin/python benchmarks/hle.py [--seeds 0,1,2] [--sections digits,clinc]
        [--data-root ../shared/data/clinc150] [--clinc-max-per-class N]
        [--out benchmarks/hle_results.md]

Sections (both methods on the same streams and seeds; online, batch 10, one pass;
MLP 256-256, Adam lr 1e-3):

- ``digits``: scikit-learn 8x8 digits, coarse = digit pairs {0,1},...,{8,9}; 40% of each
  digit's training examples arrive first with the coarse label, then fine labels per
  coarse class (5 fine experiences); memory 200. This is the claim of
  ``lifelong reproduce hle --scale full``.
- ``clinc``: CLINC150 as frozen 384-d MiniLM features (cached), coarse = the 10 domains,
  fine = the 150 intents revealed one domain at a time; 40% coarse-labelled first;
  memory 500.

Reported: final coarse accuracy ``R[-1, 0]`` and final fine accuracy ``mean(R[-1, 1:])``
(mean ± std over seeds), and learn seconds per run (the machine is shared: timings are
indicative only).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _fmt(v) -> str:
    return f"{np.mean(v):.3f} ± {np.std(v):.3f}"


def main(argv=None) -> None:
    """Run the sections and write a markdown table."""
    from lifelong.data import load_dataset, load_digits
    from lifelong.papers.hle import DIGIT_PAIRS, run_comparison

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--sections", default="digits,clinc")
    p.add_argument("--out", default="benchmarks/hle_results.md")
    p.add_argument("--clinc-max-per-class", type=int, default=None, help="subsample CLINC150 (quick runs)")
    p.add_argument(
        "--data-root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clinc150")
    )
    a = p.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    lines = [
        "# HLE vs ER per hierarchy level",
        "",
        f"Command: `.venv/bin/python benchmarks/hle.py --seeds {a.seeds} --sections {a.sections}"
        + (f" --clinc-max-per-class {a.clinc_max_per_class}`" if a.clinc_max_per_class else "`"),
        "",
        "| section | method | coarse acc | fine acc | learn s / run |",
        "|---|---|---|---|---|",
    ]
    for section in a.sections.split(","):
        t = time.time()
        if section == "digits":
            out = run_comparison(load_digits(), seeds, coarse_labels=DIGIT_PAIRS, buffer_size=200)
        elif section == "clinc":
            out = run_comparison(
                load_dataset("clinc150", data_root=a.data_root, progress=False, max_per_class=a.clinc_max_per_class),
                seeds,
                buffer_size=500,
            )
        else:
            raise SystemExit(f"unknown section {section!r}; use digits and/or clinc")
        for m, r in out.items():
            lines.append(f"| {section} | {m} | {_fmt(r['coarse'])} | {_fmt(r['fine'])} | {np.mean(r['seconds']):.1f} |")
            print(lines[-1], flush=True)
        gain = np.mean(out["hle"]["fine"]) - np.mean(out["er"]["fine"])
        gap = np.mean(out["hle"]["coarse"]) - np.mean(out["er"]["coarse"])
        lines.append(f"| {section} | hle − er | {gap:+.3f} | {gain:+.3f} | ({time.time() - t:.0f} s section) |")
        print(lines[-1], flush=True)
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
