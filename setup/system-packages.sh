#!/usr/bin/env bash
# The Debian/Ubuntu packages the project needs besides Python >= 3.11, in one list that the README's set-up and
# CI's .ci/run both use:
#   make, python3-venv    the two commands (make creates .venv with Python's venv module)
#   libegl1 libegl-mesa0 libgl1-mesa-dri
#                         EGL, so MuJoCo (DeepMind Control) renders headless on a CPU (MUJOCO_GL=egl)
#   chromium              the headless browser the report test opens report.html in (and the web dream's test)
#   nodejs npm            npm installs ONNX Runtime Web (package.json), which 05_dream.py --web copies into its page;
#                         skipped where npm is already on the PATH: a Node.js from another source (NodeSource's
#                         nodejs bundles npm) conflicts with Debian's npm package, and apt refuses the whole list
# Run as root (or through sudo). Safe to run again.
set -euo pipefail
PACKAGES=(make python3-venv libegl1 libegl-mesa0 libgl1-mesa-dri chromium)
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(nodejs npm); fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "system packages installed: ${PACKAGES[*]}"
