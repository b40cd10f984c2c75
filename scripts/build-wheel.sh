#!/usr/bin/env bash
# Builds the `ducksnap` wheel from this checkout and proves it works where
# no Rust toolchain is: installs it into a fresh venv whose PATH has no
# cargo, then runs `ducksnap --version`, `ducksnap demo` and
# `python -c "import ducksnap"` from it.
#
#   scripts/build-wheel.sh [--release]     (default: the dev profile, which
#                                           reuses the test build's DuckDB)
# Environment: CARGO_TARGET_DIR (default ~/.cache/ducksnap-target), CC/CXX
# as for every other build (ccache), WHEEL_DIR (default target/wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ducksnap-target}"
profile=dev
[ "${1:-}" = "--release" ] && profile=release
wheels="${WHEEL_DIR:-$CARGO_TARGET_DIR/wheels}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== maturin (build tool)"
python3 -m venv "$work/build"
"$work/build/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.5,<2"

echo "== wheel ($profile profile)"
rm -rf "$wheels" && mkdir -p "$wheels"
start=$(date +%s)
"$work/build/bin/maturin" build --profile "$profile" --out "$wheels" --compatibility linux --quiet
echo "built in $(( $(date +%s) - start )) s: $(ls "$wheels")"

echo "== fresh venv without a Rust toolchain"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "$wheels"/ducksnap-*.whl
clean_path="$work/venv/bin:/usr/bin:/bin"
if PATH="$clean_path" command -v cargo >/dev/null; then
  echo "cargo is on the clean PATH" >&2; exit 1
fi
cd "$work"
PATH="$clean_path" ducksnap --version
PATH="$clean_path" ducksnap demo --dir "$work/demo"
PATH="$clean_path" "$work/venv/bin/python" - <<'PY'
import subprocess, sys, ducksnap
exe = ducksnap.find_binary()
assert exe and exe.startswith(sys.prefix), (exe, sys.prefix)  # the bundled one
out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
assert out.split()[1] == ducksnap.__version__, (out, ducksnap.__version__)
print("import ducksnap", ducksnap.__version__, "with", exe)
PY
echo "wheel OK"
