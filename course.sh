#!/usr/bin/env bash
# One entry point for learners, instructors and CI.
#
#   bash course.sh run [--train] [--smoke] [--device cpu|cuda|mps]   set up, then run every notebook into build/
#                      [--only NN ...] [NOTEBOOK ...]              (notebooks, HTML pages, build/index.html)
#   bash course.sh test [pytest args]                                 set up (with test tools), then run all tests
#   bash course.sh setup [--test] [--browser] [--nbgrader]            only set up
#
# Set-up is idempotent: it creates .venv (unless a virtualenv or conda env is active), installs
# PyTorch first (CPU build unless told otherwise, see README), then this project.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"   # override e.g. TORCH_SPEC="torch>=2.1"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"       # e.g. the PyTorch CPU wheel index (see README)

python_bin() {
  if [[ -n "${VIRTUAL_ENV:-}" || -n "${CONDA_PREFIX:-}" ]]; then
    command -v python
  else
    if [[ ! -x .venv/bin/python ]]; then
      echo "==> creating virtual environment .venv" >&2
      "${PYTHON:-python3}" -m venv .venv
    fi
    echo .venv/bin/python
  fi
}

get_fashion_mnist() {
  # Debian/Ubuntu ship the original files; elsewhere the loader downloads them on first use.
  if [[ -d /usr/share/datasets/fashion-mnist ]] || ! command -v apt-get >/dev/null; then
    return 0
  fi
  local sudo=""
  [[ "$(id -u)" == 0 ]] || sudo="sudo -n"
  echo "==> installing Fashion-MNIST from Debian (apt-get install dataset-fashion-mnist)"
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1 \
    || echo "    (not installed: no root rights or no apt; the loader will try to download it)"
}

setup() {
  local extra="$1" py
  py="$(python_bin)"
  if ! "$py" -c "import torch" 2>/dev/null; then
    echo "==> installing PyTorch ($TORCH_SPEC) before the project, so pip keeps this build"
    if [[ -n "$TORCH_INDEX_URL" ]]; then
      "$py" -m pip install -q "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
    else
      "$py" -m pip install -q "$TORCH_SPEC"
    fi
  fi
  echo "==> installing course_utils${extra}"
  "$py" -m pip install -q -e ".${extra}"
  get_fashion_mnist
}

cmd="${1:-}"
shift || true
case "$cmd" in
  setup)   # setup [--test] [--browser] [--nbgrader]: choose the optional extras
    extras=()
    for arg in "$@"; do
      case "$arg" in
        --test) extras+=(test) ;;
        --browser) extras+=(browser) ;;
        --nbgrader) extras+=(nbgrader) ;;
        *) echo "unknown option for setup: $arg (use --test, --browser and/or --nbgrader)" >&2; exit 2 ;;
      esac
    done
    if (( ${#extras[@]} )); then setup "[$(IFS=,; echo "${extras[*]}")]"; else setup ""; fi ;;
  run)
    setup ""
    exec "$(python_bin)" -m course_utils.run_course "$@" ;;
  test)
    setup "[test]"
    # One worker per core (pytest-xdist); each test file stays on one worker (see conftest.py).
    # Add `-n 0` to run everything in this process, e.g. with a debugger.
    exec "$(python_bin)" -m pytest -n auto --dist loadfile "$@" ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2 ;;
esac
