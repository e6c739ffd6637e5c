#!/usr/bin/env bash
# The README's example networks trained with their specs' own recipes in PyTorch on whatever this
# machine has (the CPU here), each run recorded under benchmarks/results/ with its command and
# every epoch's metrics. Usage: bash benchmarks/train_examples.sh
set -euo pipefail
for spec in unet-digits code-language-cnn code-language-lstm; do
  run="runs/${spec}-torch-$(date +%Y%m%d-%H%M%S)"
  start=$(date +%s)
  netspec train "specs/examples/${spec}.yaml" --backend torch --run-dir "$run"
  echo "${spec}: $(( $(date +%s) - start )) s wall"
  python benchmarks/record_training.py "$run" --out "benchmarks/results/train_${spec//-/_}_torch.json"
done
