#!/bin/bash
# Issue 24: the recipe (batch 16) at a 24-minute budget against its 8-minute models (runs/abl/D_b16), one dataset
# after another on one thread; two chains run side by side (the 8-minute models were also trained two at a time).
# usage (from the repository root): benchmarks/results/stop35/long.sh MINUTES D1 [D2 ...]
M=$1; shift
mkdir -p runs/long$M
for D in "$@"; do
  N=128; [ "$D" = osuleaf ] && N=64
  python benchmarks/suite.py --out runs/long$M/$D --datasets $D --stages train --domains freq --minutes $M > runs/long$M/$D.train.log 2>&1
  python benchmarks/studies/recipe_on_validation.py --runs b16_8min=runs/abl/${D}_b16 b16_${M}min=runs/long$M/$D --datasets $D --num-samples $N > runs/long$M/$D.val.md 2> runs/long$M/$D.val.err
  python benchmarks/suite.py --out runs/long$M/$D --datasets $D --stages score --num-samples $N --field-runs 0 > runs/long$M/$D.score.log 2>&1
  echo "$D done $(date)" >> runs/long$M/progress
done
