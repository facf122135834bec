"""The speed-quality front (issue 7): every sampler timed and scored against uncached EM-1000.

Thin wrapper over :func:`pyfdc.evaluation.front.run_front` (also ``pyfdc benchmark --front``)::

    python benchmarks/bench_front.py --out benchmarks/results/front_small --threads 2
    python benchmarks/bench_front.py --checkpoint runs/paper --num-samples 128 --specs em:250 dpm2m:25

Reruns into the same --out reuse the saved sample sets of the same model (resumable).
"""
from __future__ import annotations

import sys

from pyfdc.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", "--front", *sys.argv[1:]]))
