#!/usr/bin/env bash
# The GPU smoke test, one command on a machine with a CUDA GPU (<= 10 minutes on one H100/H200):
# installs lawsearch (.venv, the [train] extra: torch 2.13.0 from PyPI, whose Linux wheel carries
# CUDA), generates a corpus in studies/llama_mixture_gpu.toml's layout, runs `lawsearch plan` on
# a copy of that study cut to a few hundred steps (timing real steps on the GPU), trains 2
# candidates with the study's trainer (bf16 autocast, fused AdamW, torch.compile) and prints
# tokens/s and model FLOPs utilisation. Results: benchmarks/results/gpu_smoke/ (or --out DIR).
# Extra args go to `python -m benchmarks.gpu_smoke` (--steps N, --peak-tflops X, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "train"
.venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print('GPU:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
.venv/bin/python -m benchmarks.gpu_smoke "$@"
