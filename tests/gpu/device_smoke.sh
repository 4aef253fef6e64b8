#!/usr/bin/env bash
# GPU smoke on a lent, offline CUDA machine (python3 there holds torch, triton, tokenizers,
# safetensors, accelerate, but not our diffusers/transformers/hub/mmgp/pydantic versions).
#
# The wheels that the machine lacks travel in .whl/ (downloaded beforehand, not committed): they are
# installed into $SITE, which goes first on PYTHONPATH so that our transformers 5.24 and
# huggingface_hub 2.4 shadow the image's. Then tests/gpu/smoke.py runs; the exit status is its
# (0 all ran, 1 one failed, 3 no CUDA device, 124 timeout), or 10 when the wheels do not install;
# then tests/gpu/step_skip.py and tests/gpu/resume.py, whose statuses are the script's when the smoke
# passed.
#
#   OUT=/some/dir bash tests/gpu/device_smoke.sh
# Overrides: PYTHON (python3), WHEELS (.whl), SITE (/tmp/site), SMOKE_TIMEOUT (420 s),
# STEP_SKIP_TIMEOUT (240 s), RESUME_TIMEOUT (240 s), SMOKE_ARGS (extra arguments for smoke.py, e.g. "--models wan-tiny"),
# SMOKE_SAGE (1; 0 hides sageattention from smoke.py: it is installed apart, in $SITE-sage, and
# always probed on its own).
set -u
cd "$(dirname "$0")/../.."

PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
OUT=${OUT:-/tmp/smoke-out}
mkdir -p "$OUT"

# Nothing may reach a hub: the tiny models are built from configs by models/tiny.py.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1
export HF_HOME=${HF_HOME:-/tmp/wanfarm-hf-home} TOKENIZERS_PARALLELISM=false

install() {  # install(target, wheel...)
    local target=$1
    shift
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$target" "$@"
}
shopt -s nullglob
sage_wheels=("$WHEELS"/sageattention-*.whl)
other_wheels=()
for wheel in "$WHEELS"/*.whl; do
    [[ $wheel == */sageattention-* ]] || other_wheels+=("$wheel")
done
echo "== installing ${#other_wheels[@]} wheels from $WHEELS into $SITE, ${#sage_wheels[@]} into $SITE-sage"
started=$(date +%s)
if ((${#other_wheels[@]} == 0)) || ! install "$SITE" "${other_wheels[@]}"; then
    echo "wheel install failed" >&2
    exit 10
fi
if ((${#sage_wheels[@]})) && ! install "$SITE-sage" "${sage_wheels[@]}"; then
    echo "sageattention wheel install failed (going on without it)" >&2
fi
echo "installed in $(($(date +%s) - started)) s"
export PYTHONPATH="$SITE:$PWD"
if [[ ${SMOKE_SAGE:-1} != 0 ]]; then
    PYTHONPATH="$SITE:$SITE-sage:$PWD"
fi
echo "PYTHONPATH=$PYTHONPATH"

echo "== device"
nvidia-smi -L 2>&1 || echo "(no nvidia-smi)"

echo "== stack"
"$PY" - <<'EOF' 2>&1 | tee "$OUT/stack.log"
import importlib.metadata as md
import sys

print("python", sys.version.split()[0], sys.executable)
try:
    import torch

    cuda = torch.cuda.is_available()
    print("torch", torch.__version__, "cuda", torch.version.cuda, "available", cuda,
          torch.cuda.get_device_name(0) if cuda else "")
except Exception as error:
    print("torch import failed:", type(error).__name__, error)
for name in ("diffusers", "transformers", "huggingface_hub", "tokenizers", "safetensors", "accelerate",
             "mmgp", "optimum-quanto", "pydantic", "pydantic_core", "httpx2", "numpy", "triton",
             "regex", "typing_extensions", "sageattention"):
    try:
        print(f"  {name:18} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name:18} (absent)")
try:
    import diffusers
    import mmgp
    import transformers

    print("import ok: diffusers", diffusers.__version__, "transformers", transformers.__version__,
          "from", transformers.__file__, "mmgp", md.version("mmgp"))
except Exception as error:
    print("IMPORT FAILED:", type(error).__name__, error)
EOF

echo "== sageattention (probed from $SITE-sage whatever SMOKE_SAGE says)"
PYTHONPATH="$SITE:$SITE-sage:$PWD" "$PY" - <<'EOF' 2>&1 | tee "$OUT/sage.log"
import traceback

try:
    import sageattention

    print("import sageattention ok:", sageattention.__file__)
except Exception as error:
    print("import sageattention failed:", type(error).__name__, error)
else:
    try:  # does the Triton kernel run here at all (head_dim 64, as sage 1.x requires 64/96/128)?
        import torch
        import torch.nn.functional as F

        if torch.cuda.is_available():
            q, k, v = (torch.randn(1, 4, 256, 64, device="cuda", dtype=torch.float16) for _ in range(3))
            want = F.scaled_dot_product_attention(q, k, v)
            got = sageattention.sageattn(q, k.clone(), v, tensor_layout="HND")
            print("sageattn kernel ran; max |diff| vs sdpa:", float((got - want).abs().max()))
    except Exception:
        traceback.print_exc(limit=4)
try:
    from diffusers.models import attention_dispatch

    print("diffusers accepts sageattention (_CAN_USE_SAGE_ATTN):", attention_dispatch._CAN_USE_SAGE_ATTN,
          "needs >=", attention_dispatch._REQUIRED_SAGE_VERSION)
    from models import attention

    print("models.attention.installed_modes():", sorted(m.value for m in attention.installed_modes()))
except Exception:
    traceback.print_exc(limit=4)
EOF

echo "== the farm's sage backend at Wan 1.3B's attention shape (tests/gpu/sage.py)"
PYTHONPATH="$SITE:$SITE-sage:$PWD" PYTHONUNBUFFERED=1 timeout 120 "$PY" tests/gpu/sage.py 2>&1 | tee -a "$OUT/sage.log"

echo "== cold start of a Wan 1.3B transformer from this disk (tests/gpu/cold_start.py)"
PYTHONUNBUFFERED=1 timeout 240 "$PY" tests/gpu/cold_start.py --dir /tmp 2>&1 | tee "$OUT/cold_start.log"

echo "== fp16 where bf16 is missing, forced on this card (tests/gpu/fp16.py)"
PYTHONUNBUFFERED=1 timeout 300 "$PY" tests/gpu/fp16.py 2>&1 | tee "$OUT/fp16.log"

echo "== smoke"
# shellcheck disable=SC2086  # SMOKE_ARGS is split on purpose
PYTHONUNBUFFERED=1 timeout "${SMOKE_TIMEOUT:-420}" "$PY" tests/gpu/smoke.py --json "$OUT/smoke.json" \
    ${SMOKE_ARGS:-} 2>&1 | tee "$OUT/smoke.log"
status=${PIPESTATUS[0]}
echo "== smoke exit status $status"

echo "== step skipping (tests/gpu/step_skip.py: Wan 2.1 1.3B, random weights, 30 steps)"
PYTHONUNBUFFERED=1 timeout "${STEP_SKIP_TIMEOUT:-240}" "$PY" tests/gpu/step_skip.py --json "$OUT/step_skip.json" \
    2>&1 | tee "$OUT/step_skip.log"
skip_status=${PIPESTATUS[0]}
echo "== step skipping exit status $skip_status"
if [[ $status == 0 ]]; then
    status=$skip_status
fi

echo "== checkpoint resume (tests/gpu/resume.py: Wan 2.1 1.3B, random weights, 20 steps, stopped after 12)"
PYTHONUNBUFFERED=1 timeout "${RESUME_TIMEOUT:-240}" "$PY" tests/gpu/resume.py --json "$OUT/resume.json" \
    2>&1 | tee "$OUT/resume.log"
resume_status=${PIPESTATUS[0]}
echo "== checkpoint resume exit status $resume_status"
if [[ $status == 0 ]]; then
    status=$resume_status
fi
exit "$status"
