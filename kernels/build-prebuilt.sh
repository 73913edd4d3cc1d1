#!/usr/bin/env bash
# Builds the prebuilt Node-API addons committed under dist/kernels/<platform>-<arch>/: linux-x64 with
# the host gcc, linux-arm64 with Debian's aarch64-linux-gnu-gcc. Node-API is ABI-stable (NAPI_VERSION
# 8), so one build serves Node 20, 22 and 24; the headers come from the node-api-headers package,
# not from the running Node. The sources are binding.gyp's list (each arch file compiles to nothing
# on the other arch).
#
# Reproducible: one compile-and-link command per target with sources in a fixed order, no debug
# info, -ffile-prefix-map for the paths, a content-hash build id, stripped. Same sources and same
# compilers (Debian 12: gcc 12.2) give the same bytes; check-artifacts.sh rebuilds and compares.
# Usage: kernels/build-prebuilt.sh [out-dir (default dist/kernels)] [target ...]
# Into the default dist/kernels, it also rewrites the addons' lines of kernels/artifacts.sha256.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
default_out="$root/dist/kernels"
out="${1:-$default_out}"
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(linux-x64 linux-arm64)

headers="${NODE_API_HEADERS:-$root/node_modules/node-api-headers/include}"
if [[ ! -f "$headers/node_api.h" ]]; then
  echo "node_api.h not found in $headers: run npm ci (devDependency node-api-headers) or set NODE_API_HEADERS" >&2
  exit 1
fi

mapfile -t sources < <(node -e '
  const g = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  for (const s of g.targets[0].sources) console.log("kernels/" + s);
' "$here/binding.gyp")

cflags=(-std=c11 -O3 -ffp-contract=off -fno-fast-math -Wall -Wextra -fvisibility=hidden -fPIC -pthread
  -g0 -fno-record-gcc-switches "-ffile-prefix-map=$root/=" "-ffile-prefix-map=$headers/=node-api-headers/"
  -DNAPI_VERSION=8 -DNODE_GYP_MODULE_NAME=quantgate_kernels -DBUILDING_NODE_EXTENSION
  -Ikernels/include -isystem "$headers")
ldflags=(-shared -pthread -s -Wl,--build-id=sha1 -Wl,-O1 -Wl,--hash-style=gnu -Wl,-z,noexecstack -Wl,-z,relro -Wl,-z,now)

cd "$root"
for t in "${targets[@]}"; do
  case "$t" in
    linux-x64) cc="${CC_X64:-gcc}" ;;
    linux-arm64) cc="${CC_ARM64:-aarch64-linux-gnu-gcc}" ;;
    *) echo "unknown target $t (linux-x64, linux-arm64)" >&2; exit 1 ;;
  esac
  command -v "$cc" >/dev/null || { echo "$cc not found (Debian: gcc / gcc-aarch64-linux-gnu)" >&2; exit 1; }
  mkdir -p "$out/$t"
  # SOURCE_DATE_EPOCH pins __DATE__/__TIME__ should a source ever use them.
  SOURCE_DATE_EPOCH=0 "$cc" "${cflags[@]}" "${sources[@]}" "${ldflags[@]}" -o "$out/$t/quantgate_kernels.node"
  echo "wrote $out/$t/quantgate_kernels.node ($(wc -c <"$out/$t/quantgate_kernels.node") bytes, $("$cc" -dumpfullversion))"
done

if [[ "$(cd "$out" && pwd)" == "$default_out" ]]; then
  sums="$here/artifacts.sha256"
  touch "$sums"
  for t in "${targets[@]}"; do
    f="dist/kernels/$t/quantgate_kernels.node"
    line="$(sha256sum "$f")"
    awk -v f="$f" '$2 != f' "$sums" >"$sums.tmp"
    echo "$line" >>"$sums.tmp"
    mv "$sums.tmp" "$sums"
  done
  echo "updated kernels/artifacts.sha256"
fi
