#!/bin/bash
# stop 39: head reuse on suite models (one thread per chain)
for D in "$@"; do
  N=256; case $D in italypower|sines) N=512;; esac
  OMP_NUM_THREADS=1 python benchmarks/studies/head_reuse.py --suite runs/s39 --datasets $D --num-samples $N --rounds 3 \
     --out runs/s39/hr --ecg-checkpoint pyfdc/pretrained/ecg_small_freq > runs/s39/$D.hr.md 2> runs/s39/$D.hr.err
  echo "$D hr rc=$? $(date)" >> runs/s39/progress
done
