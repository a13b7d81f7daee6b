"""Full-scale Mamba-FSCIL reproduction (arXiv 2407.06136) on CLINC150 MiniLM features, seeds 0-2.

Both the prototype baseline and Mamba-FSCIL run on the same MLP backbone trained on the base session;
each Mamba-FSCIL arm's inc_lr is picked on a validation split; the verdict is paired per seed.

Runs :func:`lifelong.papers.mamba_fscil.reproduce` and prints the claim as JSON.
Usage: ``LIFELONG_THREADS=1 .venv/bin/python benchmarks/mamba_fscil.py [quick|full]``.
"""

import json
import sys
import time

from lifelong.papers.mamba_fscil import reproduce

if __name__ == "__main__":
    scale = sys.argv[1] if len(sys.argv) > 1 else "full"
    t = time.time()
    claim = reproduce(scale)
    print(
        json.dumps(
            {
                "scale": scale,
                "held": claim.held,
                "measured": claim.measured,
                "criterion": claim.criterion,
                "seconds": round(time.time() - t, 1),
            },
            indent=1,
        )
    )
