#!/usr/bin/env bash
# Builds dist/kernels/quantgate_kernels.wasm with Debian's clang + lld: wasm32, SIMD128, no libc
# beyond kernels/src/arch/wasm/qg_libc.c. Memory is exported and managed from JS (bump allocation
# from __heap_base). Deterministic: same sources and clang give the same bytes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../dist/kernels/quantgate_kernels.wasm}"
CLANG="${CLANG:-clang}"
mkdir -p "$(dirname "$out")"
cd "$here"
"$CLANG" --target=wasm32 -O3 -msimd128 -mbulk-memory -mnontrapping-fptoint -nostdlib -ffreestanding \
  -ffp-contract=off -fno-fast-math -std=c11 -Wall -Wextra \
  -isystem src/arch/wasm/libc -Iinclude \
  src/qg_api.c src/qg_ref.c src/qg_prep.c src/qg_gptq.c src/qg_tables.c src/qg_lowrank.c src/arch/wasm/qg_simd128.c src/arch/wasm/qg_libc.c \
  -Wl,--no-entry -Wl,--export=__heap_base -Wl,--export-table -Wl,-z,stack-size=1048576 \
  -Wl,--initial-memory=2097152 -Wl,--strip-all \
  -o "$out"
echo "wrote $out ($(wc -c <"$out") bytes)"
