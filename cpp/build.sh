#!/usr/bin/env bash
# Build cpp/build/native_hct against the LibTorch inside the venv's torch wheel, and OpenCV.
#   bash cpp/build.sh                  # needs cmake, g++, libopencv-dev
#   bash cpp/build.sh --install-deps   # apt-get them first (root or sudo), then build
#   bash cpp/build.sh --deps-only      # only apt-get them (what .ci/run does before the venv exists)
#   PYTHON=/path/to/python bash cpp/build.sh   # another interpreter's torch (default: .venv)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [[ "${1:-}" == "--install-deps" || "${1:-}" == "--deps-only" ]]; then
  if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null || [[ ! -d /usr/include/opencv4 ]]; then
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq cmake g++ libopencv-dev >/dev/null
  fi
  [[ "$1" == "--deps-only" ]] && exit 0
  shift
fi

PYTHON="${PYTHON:-$here/../.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"
torch_prefix="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
args=(-DCMAKE_PREFIX_PATH="$torch_prefix" -DCMAKE_BUILD_TYPE=Release)

# A CUDA build of the wheel: its TorchConfig looks for a CUDA toolkit and nvrtc even for
# CPU use. Point it at /usr/local/cuda-* and at the nvidia pip packages' libnvrtc.
if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)'; then
  cuda_root="${CUDA_HOME:-$(ls -d /usr/local/cuda-* 2>/dev/null | sort -V | tail -n 1)}"
  [[ -n "$cuda_root" ]] || { echo "error: torch is a CUDA build but no CUDA toolkit under /usr/local/cuda-*; set CUDA_HOME" >&2; exit 2; }
  nvrtc="$("$PYTHON" - <<'EOF'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
hits = sorted(p for r in roots for p in glob.glob(os.path.join(r, "nvidia", "**", "libnvrtc.so*"), recursive=True)
              if "builtins" not in os.path.basename(p) and "alt" not in os.path.basename(p))
print(hits[0] if hits else "")
EOF
)"
  args+=(-DCUDA_TOOLKIT_ROOT_DIR="$cuda_root" -DCMAKE_CUDA_STANDARD=17 -DCMAKE_CUDA_COMPILER="$cuda_root/bin/nvcc")
  [[ -n "$nvrtc" ]] && args+=(-DCUDA_nvrtc_LIBRARY="$nvrtc")
fi

cmake -S "$here" -B "$here/build" "${args[@]}" >"$here/build.log" 2>&1 || { tail -n 30 "$here/build.log" >&2; exit 1; }
cmake --build "$here/build" -j "$(nproc)" >>"$here/build.log" 2>&1 || { tail -n 30 "$here/build.log" >&2; exit 1; }
echo "$here/build/native_hct"
