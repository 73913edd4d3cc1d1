#!/usr/bin/env bash
# Rebuilds the committed kernel artifacts from source and compares them with kernels/artifacts.sha256.
# The WebAssembly module is byte-reproducible (same clang, no paths or timestamps embedded) and is
# checked by hash. The native addon is not (it depends on the Node headers, compiler and build
# paths), so it is rebuilt and tested instead: C tests under ASan/UBSan, then its vitest suite.
# The prebuilt addons under dist/kernels/linux-{x64,arm64}/ are built by build-prebuilt.sh with
# reproducible flags from node-api-headers (not the local Node), so they are checked by hash too:
# same sources and Debian 12's gcc 12.2 / aarch64-linux-gnu-gcc 12.2 give the same bytes. The x64
# one is then loaded and checked against the TypeScript reference (addon-check.mjs); the arm64 one
# is run under qemu by test-arm.sh. SKIP_PREBUILT=1 skips them (no cross compiler).
# Usage: kernels/check-artifacts.sh [--update]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

bash "$here/build-wasm.sh" "$tmp/quantgate_kernels.wasm" >/dev/null
if [[ "${1:-}" == "--update" ]]; then
  cp "$tmp/quantgate_kernels.wasm" "$root/dist/kernels/quantgate_kernels.wasm"
  files=(dist/kernels/quantgate_kernels.wasm)
  if [[ "${SKIP_PREBUILT:-0}" != "1" ]]; then
    bash "$here/build-prebuilt.sh" "$root/dist/kernels" >/dev/null
    files+=(dist/kernels/linux-x64/quantgate_kernels.node dist/kernels/linux-arm64/quantgate_kernels.node)
  fi
  (cd "$root" && sha256sum "${files[@]}" >"$here/artifacts.sha256")
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

if [[ "${SKIP_PREBUILT:-0}" != "1" ]]; then
  bash "$here/build-prebuilt.sh" "$tmp/prebuilt" >/dev/null
  for t in linux-x64 linux-arm64; do
    f="dist/kernels/$t/quantgate_kernels.node"
    expected="$(awk -v f="$f" '$2 == f {print $1}' "$here/artifacts.sha256")"
    rebuilt="$(sha256sum "$tmp/prebuilt/$t/quantgate_kernels.node" | cut -d' ' -f1)"
    committed="$(sha256sum "$root/$f" 2>/dev/null | cut -d' ' -f1)"
    ok=1
    [[ -n "$expected" ]] || { echo "$f has no line in artifacts.sha256 (run kernels/check-artifacts.sh --update)"; ok=0; }
    [[ "$rebuilt" == "$expected" ]] || { echo "$f rebuilt from source ($rebuilt) differs from artifacts.sha256 ($expected): sources changed (npm run build:prebuilt, then --update) or another compiler ($(gcc -dumpfullversion))"; ok=0; }
    [[ "$committed" == "$expected" ]] || { echo "committed $f ($committed) differs from artifacts.sha256"; ok=0; }
    if [[ $ok == 1 ]]; then echo "prebuilt $t OK ($expected)"; else status=1; fi
  done
  if [[ "$(uname -m)" == "x86_64" ]]; then
    [[ -f "$root/lib/kernels/index.js" ]] || (cd "$root" && npx tsc -p tsconfig.build.json)
    node "$here/test/addon-check.mjs" "$root/dist/kernels/linux-x64/quantgate_kernels.node" "$root/lib" | tail -1 || status=1
  fi
fi

if [[ "${SKIP_NATIVE:-0}" != "1" ]]; then
  (cd "$root" && npx node-gyp rebuild --directory kernels >/dev/null)
  bash "$here/test-asan.sh"
  (cd "$root" && npx vitest run test/kernels)
fi
exit $status
