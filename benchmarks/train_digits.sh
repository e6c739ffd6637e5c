#!/usr/bin/env bash
# The README's longer training run, for both backends, recorded under benchmarks/results/.
# torchvision's AlexNet on scikit-learn's digits at 64x64 (no download), 10 epochs, on whatever
# this machine has (the CPU here). Usage: bash benchmarks/train_digits.sh [EPOCHS]
set -euo pipefail
epochs="${1:-10}"
for backend in torch keras; do
  run="runs/digits-${backend}-$(date +%Y%m%d-%H%M%S)"
  netspec train specs/alexnet-digits.yaml --backend "$backend" --epochs "$epochs" --run-dir "$run"
  python benchmarks/record_training.py "$run" --out "benchmarks/results/train_alexnet_digits_${backend}.json"
done
