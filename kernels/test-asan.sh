#!/usr/bin/env bash
# Builds the C test driver (every SIMD kernel against its scalar reference) with AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs it; a failed check or a sanitizer report exits non-zero.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${TMPDIR:-/tmp}/quantgate-kernels-asan"
CC="${CC:-gcc}"
srcs=("$here/src/qg_api.c" "$here/src/qg_ref.c" "$here/src/qg_threads.c" "$here/src/qg_prep.c" "$here/src/qg_gptq.c" "$here/src/qg_tables.c" "$here/src/qg_lowrank.c" "$here/test/test_kernels.c")
case "$(uname -m)" in
  x86_64 | amd64) srcs+=("$here/src/arch/x86/qg_avx2.c" "$here/src/arch/x86/qg_avx512.c") ;;
  aarch64 | arm64) srcs+=("$here/src/arch/arm/qg_neon.c") ;;
esac
"$CC" -std=c11 -O1 -g -ffp-contract=off -fno-omit-frame-pointer -Wall -Wextra -Werror \
  -fsanitize=address,undefined -fno-sanitize-recover=all \
  -I"$here/include" "${srcs[@]}" -lm -pthread -o "$out"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$out"
# The table-format and low-rank kernels' driver, same sanitizers.
"$CC" -std=c11 -O1 -g -ffp-contract=off -fno-omit-frame-pointer -Wall -Wextra -Werror \
  -fsanitize=address,undefined -fno-sanitize-recover=all \
  -I"$here/include" "${srcs[@]/%test_kernels.c/test_tables_lowrank.c}" -lm -pthread -o "$out-tables"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$out-tables"
# The scalar-only build (what a CPU without AVX2 runs) under the same sanitizers.
"$CC" -std=c11 -O1 -g -ffp-contract=off -DQG_SCALAR_ONLY -Wall -Wextra -Werror -fsanitize=address,undefined \
  -fno-sanitize-recover=all -I"$here/include" "$here/src/qg_api.c" "$here/src/qg_ref.c" "$here/src/qg_threads.c" "$here/src/qg_prep.c" "$here/src/qg_gptq.c" "$here/src/qg_tables.c" "$here/src/qg_lowrank.c" \
  "$here/test/test_kernels.c" -lm -pthread -o "$out-scalar"
"$out-scalar"
"$CC" -std=c11 -O1 -g -ffp-contract=off -DQG_SCALAR_ONLY -Wall -Wextra -Werror -fsanitize=address,undefined \
  -fno-sanitize-recover=all -I"$here/include" "$here/src/qg_api.c" "$here/src/qg_ref.c" "$here/src/qg_threads.c" "$here/src/qg_prep.c" "$here/src/qg_gptq.c" "$here/src/qg_tables.c" "$here/src/qg_lowrank.c" \
  "$here/test/test_tables_lowrank.c" -lm -pthread -o "$out-tables-scalar"
"$out-tables-scalar"
