#!/usr/bin/env bash
# GPU smoke on a lent, offline CUDA machine (python3 there holds torch, triton, tokenizers,
# safetensors, accelerate, but not our diffusers/transformers/hub/mmgp/pydantic versions).
#
# The wheels that the machine lacks travel in .whl/ (tests/gpu/wheels.sh downloads them; 49 MB): they are
# installed into $SITE, which goes first on PYTHONPATH so that our transformers 5.24 and
# huggingface_hub 2.4 shadow the image's. Then tests/gpu/checks.py runs every check (SageAttention,
# fp16, cold start, step speed, LoRAs under mmgp, weight files, resume, step skipping, the smoke,
# the 14B's cold start). $OUT gets stack.log, sage.log, checks.log (every JSON line) and logs.tgz
# (each check's log and JSON file): few files, as a device call brings back 8 at most;
# the exit status is its (0 none failed, else the first failure's), or 10 when the wheels do not
# install.
#
#   OUT=/some/dir bash tests/gpu/device_smoke.sh
# Overrides: PYTHON (python3), WHEELS (.whl), SITE (/tmp/site), SMOKE_ARGS (extra arguments for
# smoke.py, e.g. "--models wan-tiny"; each check's time limit is in checks.py),
# SMOKE_SAGE (1; 0 hides sageattention from smoke.py: it is installed apart, in $SITE-sage, and
# always probed on its own), CHECKS (checks.py --only), CHECKS_BUDGET (checks.py --budget, seconds).
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
             "regex", "typing_extensions", "sageattention", "xformers", "peft", "truststore"):
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

echo "== every GPU check (tests/gpu/checks.py): one JSON line per check"
extra=()
if [[ -n ${SMOKE_ARGS:-} ]]; then
    extra=(--extra "smoke=$SMOKE_ARGS")
fi
if [[ -n ${CHECKS_BUDGET:-} ]]; then  # the seconds left of the device call, the wheels installed
    extra+=(--budget "$CHECKS_BUDGET")
fi
if [[ -n ${CHECKS:-} ]]; then
    extra+=(--only "$CHECKS")
fi
LOGS=$(mktemp -d /tmp/wanfarm-checks-XXXX)
PYTHONUNBUFFERED=1 "$PY" tests/gpu/checks.py --out "$LOGS" ${extra[@]+"${extra[@]}"} 2>&1 | tee "$OUT/checks.log"
status=${PIPESTATUS[0]}
tar czf "$OUT/logs.tgz" -C "$LOGS" --exclude '*.safetensors' .
echo "== checks exit status $status"
exit "$status"
