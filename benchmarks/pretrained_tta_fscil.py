"""Full-scale reproductions on frozen MiniLM features of CLINC150: DKVB (26), LAME (47), FSCIL tricks (7).

    .venv/bin/python benchmarks/pretrained_tta_fscil.py [--papers dkvb,lame,fscil-tricks] [--threads 1]

Runs ``reproduce(scale="full")`` of each paper, times it, and writes every measured
number with the command into ``benchmarks/pretrained_tta_fscil_results.md``
(``--out``). CLINC150 comes from ``LIFELONG_DATA`` or the workspace's
``../shared/data``; its MiniLM features are computed once and cached.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--papers", default="dkvb,lame,fscil-tricks")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "pretrained_tta_fscil_results.md"))
    a = p.parse_args(argv)

    import importlib

    import torch

    from lifelong.papers import format_claim

    torch.set_num_threads(a.threads)
    command = "python benchmarks/pretrained_tta_fscil.py " + " ".join(argv if argv is not None else sys.argv[1:])
    sections, raw = [], {}
    for name in [n.strip() for n in a.papers.split(",") if n.strip()]:
        t0 = time.perf_counter()
        # the paper's own module: a broken other paper module cannot stop this run
        claim = importlib.import_module(f"lifelong.papers.{name.replace('-', '_')}").reproduce(scale="full")
        seconds = time.perf_counter() - t0
        raw[name] = {**claim.to_dict(), "wall_seconds": round(seconds, 1)}
        print(format_claim(claim), flush=True)
        print(f"[{name}: {seconds:.0f} s]", flush=True)
        rows = "\n".join(f"| {k} | {v} |" for k, v in claim.measured.items())
        sections.append(
            f"## {name}: {'HELD' if claim.held else 'NOT HELD'}\n\n"
            f"- claim: {claim.statement}\n- criterion: {claim.criterion}\n"
            f"- wall time: {seconds:.0f} s ({a.threads} torch thread(s), shared 2-core machine)\n"
            f"- notes: {claim.notes}\n\n| measured | value |\n|---|---|\n{rows}\n"
        )
    text = (
        f"# Pre-trained features: DKVB, LAME, FSCIL tricks (full scale)\n\n"
        f"Command: `{command.strip()}` (equivalently `lifelong reproduce <name> --scale full`).\n"
        f"Machine: {platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}.\n\n"
        + "\n".join(sections)
        + "\n<details><summary>raw JSON</summary>\n\n```json\n"
        + json.dumps(raw, indent=1)
        + "\n```\n</details>\n"
    )
    Path(a.out).write_text(text, encoding="utf-8")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
