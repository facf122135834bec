#!/bin/bash
# Batch ablation: b64 vs b16, 8-min frequency models side by side (one thread each), then validation + held-out.
# run from the repository root
for D in "$@"; do
  for B in 64 16; do
    python benchmarks/suite.py --out runs/abl/${D}_b$B --datasets $D --stages train --domains freq --minutes 8 --train-batch $B > runs/abl/${D}_b$B.train.log 2>&1 &
  done
  wait
  python benchmarks/studies/recipe_on_validation.py --runs b64=runs/abl/${D}_b64 b16=runs/abl/${D}_b16 --datasets $D > runs/abl/${D}.val.md 2>runs/abl/${D}.val.err
  for B in 64 16; do
    python benchmarks/suite.py --out runs/abl/${D}_b$B --datasets $D --stages score --num-samples 128 --field-runs 0 > runs/abl/${D}_b$B.score.log 2>&1
  done
  echo "$D done $(date)" >> runs/abl/chain.progress
done
