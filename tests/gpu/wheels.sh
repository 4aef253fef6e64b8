#!/usr/bin/env bash
# The wheels tests/gpu/device_smoke.sh installs on the GPU machine, which reaches no package index:
# what its Python (3.12, x86-64, with torch, triton, accelerate, safetensors, numpy) lacks for the
# checks, or holds in other versions than ours, at the versions of this checkout's .venv, and the
# `cuda` extra's kernels: SageAttention 1.0.6 (the one wheel PyPI has) and xFormers 0.0.35.
# Downloaded here into .whl/ (ignored by git).
#
#   bash tests/gpu/wheels.sh        (then carry .whl to the device: see device_smoke.sh)
# Overrides: PYTHON (.venv/bin/python: whose versions are taken), WHEELS (.whl).
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${PYTHON:-.venv/bin/python}
WHEELS=${WHEELS:-.whl}
# What the check scripts import that the image lacks (diffusers' and mmgp's needs among them, and
# httpcore2's truststore, imported with it), and what it has in other versions (transformers,
# huggingface_hub, tokenizers, peft, pydantic). Each wheel's own needs are in this list or the image.
PACKAGES=(
    diffusers transformers huggingface_hub httpx2 httpcore2 truststore tokenizers regex peft
    mmgp optimum-quanto gguf ftfy wcwidth
    pydantic pydantic_core annotated-types typing-inspection typing_extensions
    boto3 botocore jmespath s3transfer
)
pins=(sageattention==1.0.6 xformers==0.0.35)
for name in "${PACKAGES[@]}"; do
    pins+=("$name==$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name")")
done
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
mkdir -p "$WHEELS"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$WHEELS" "${pins[@]}"
echo "${#pins[@]} wheels in $WHEELS: $(du -sh "$WHEELS" | cut -f1) (a device call carries 64 MiB at most)"
