#!/usr/bin/env bash
# Rebuilds the committed kernel artifacts from source and compares them with kernels/artifacts.sha256.
# The WebAssembly module is byte-reproducible (same clang, no paths or timestamps embedded) and is
# checked by hash. The native addon is not (it depends on the Node headers, compiler and build
# paths), so it is rebuilt and tested instead: C tests under ASan/UBSan, then its vitest suite.
# Usage: kernels/check-artifacts.sh [--update]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

bash "$here/build-wasm.sh" "$tmp/quantgate_kernels.wasm" >/dev/null
if [[ "${1:-}" == "--update" ]]; then
  cp "$tmp/quantgate_kernels.wasm" "$root/dist/kernels/quantgate_kernels.wasm"
  (cd "$root" && sha256sum dist/kernels/quantgate_kernels.wasm >"$here/artifacts.sha256")
  echo "updated kernels/artifacts.sha256"
  exit 0
fi
expected="$(awk '$2 == "dist/kernels/quantgate_kernels.wasm" {print $1}' "$here/artifacts.sha256")"
rebuilt="$(sha256sum "$tmp/quantgate_kernels.wasm" | cut -d' ' -f1)"
committed="$(sha256sum "$root/dist/kernels/quantgate_kernels.wasm" | cut -d' ' -f1)"
status=0
[[ "$rebuilt" == "$expected" ]] || { echo "wasm rebuilt from source ($rebuilt) differs from artifacts.sha256 ($expected)"; status=1; }
[[ "$committed" == "$expected" ]] || { echo "committed dist/kernels/quantgate_kernels.wasm ($committed) differs from artifacts.sha256"; status=1; }
[[ $status == 0 ]] && echo "wasm artifact OK ($expected)"

if [[ "${SKIP_NATIVE:-0}" != "1" ]]; then
  (cd "$root" && npx node-gyp rebuild --directory kernels >/dev/null)
  bash "$here/test-asan.sh"
  (cd "$root" && npx vitest run test/kernels)
fi
exit $status
