#!/bin/bash
# OSULeaf: 64 series per set (427 steps: an EM-1000 set of 128 costs ~12 min of a core), both arms in parallel.
# run from the repository root
until grep -q basicmotions runs/abl/chain.progress 2>/dev/null; do sleep 10; done
sleep 20
pkill -f "runs/abl/chain.sh"
while pgrep -f "suite.py --out runs/abl/osuleaf" > /dev/null; do sleep 10; done
for B in 64 16; do
  python benchmarks/studies/recipe_on_validation.py --runs b$B=runs/abl/osuleaf_b$B --datasets osuleaf --num-samples 64 > runs/abl/osuleaf_b$B.val1.md 2>&1 &
done
wait
python benchmarks/studies/recipe_on_validation.py --runs b64=runs/abl/osuleaf_b64 b16=runs/abl/osuleaf_b16 --datasets osuleaf --num-samples 64 > runs/abl/osuleaf.val.md 2>runs/abl/osuleaf.val.err
for B in 64 16; do
  python benchmarks/suite.py --out runs/abl/osuleaf_b$B --datasets osuleaf --stages score --num-samples 64 --field-runs 0 > runs/abl/osuleaf_b$B.score.log 2>&1 &
done
wait
echo "osuleaf done $(date)" >> runs/abl/chain.progress
