#!/usr/bin/env bash
# The whole test suite, in order: lint, types, layer contract, tests (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
ruff check --no-cache src tests benchmarks
ruff format --no-cache --check src tests benchmarks
mypy --strict -p llmport
lint-imports
pytest -W error "$@"
