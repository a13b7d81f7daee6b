"""Full-scale CFSL / instance-test benchmark (Kowadlo et al., PLOS ONE 2024; arXiv 2209.07863).

Runs ``lifelong.papers.cfsl_instance.reproduce("full")`` (3 seeds: meta-trained ProtoNet class test
at N_C in {10, 50, 100} on procedural glyphs; pre-trained Pretrain+Tune with/without replay (lr of each
picked on validation instances) and ProtoNet on the instance test with 50 digits instances; replay
accuracy over occlusion {0, 0.1, 0.25, 0.5}; paired per-seed verdicts) and prints the numbers as Markdown.

    LIFELONG_THREADS=1 .venv/bin/python benchmarks/cfsl.py
"""

import json
import time

from lifelong.papers.cfsl_instance import reproduce


def main() -> None:
    """Run the full reproduction and print a Markdown table of its numbers."""
    t = time.perf_counter()
    claim = reproduce("full")
    print(f"claim held: {claim.held}  ({time.perf_counter() - t:.0f} s)\n")
    print(f"criterion: {claim.criterion}\n")
    print("| measure | value |\n|---|---|")
    for k, v in claim.measured.items():
        print(f"| {k} | {v} |")
    print("\n" + json.dumps(claim.to_dict()))


if __name__ == "__main__":
    main()
