// The prebuilt addon under dist/kernels/<platform>-<arch>/ as a runner sees it: a copy of dist/ with
// no node_modules and no node-gyp dev build, loaded by plain node in a child process.
// (linux-arm64: kernels/test-arm.sh runs the same checks under qemu-aarch64 with an arm64 node.)
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { quantizeBlockwiseRef, type BlockwiseSpec } from "../../src/quantize/blockwise.js";
import { makeWeights } from "./helpers.js";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const PLAT = `${process.platform}-${process.arch}`;
const ADDON = path.join(ROOT, "dist/kernels", PLAT, "quantgate_kernels.node");
const tmp = mkdtempSync(path.join(os.tmpdir(), "qg-prebuilt-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs an ES module in `cwd` with plain node and a bare environment; returns its JSON output. */
function runNode(cwd: string, source: string): Record<string, unknown> {
  const file = path.join(cwd, "check.mjs");
  writeFileSync(file, source);
  const r = spawnSync(process.execPath, [file], { cwd, env: { PATH: process.env.PATH ?? "" }, encoding: "utf8" });
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
}

/** lib/ (the compiled TypeScript) when it is newer than the loader's source, else a fresh compile into tmp. */
function compiledLib(): string {
  const lib = path.join(ROOT, "lib");
  const built = path.join(lib, "kernels/index.js");
  const fresh =
    existsSync(built) &&
    ["kernels/index.ts", "kernels/js.ts", "kernels/wasm.ts", "quantize/blockwise.ts"].every(
      (f) => statSync(path.join(ROOT, "src", f)).mtimeMs <= statSync(path.join(lib, f.replace(/\.ts$/, ".js"))).mtimeMs,
    );
  if (fresh) return lib;
  const out = path.join(tmp, "tsc-out");
  execFileSync(path.join(ROOT, "node_modules/.bin/tsc"), ["-p", path.join(ROOT, "tsconfig.build.json"), "--outDir", out]);
  return out;
}

const spec: BlockwiseSpec = { bits: 4, blockSize: 32, symmetric: false, clipSearch: true };
const [n, k] = [6, 200];

describe.skipIf(PLAT !== "linux-x64")("prebuilt linux-x64 addon from dist/", () => {
  it("is committed, and loads in plain node from a copy of dist/ without node_modules", () => {
    expect(existsSync(ADDON), `${ADDON} (npm run build:prebuilt)`).toBe(true);
    const dir = path.join(tmp, "plain");
    cpSync(path.join(ROOT, "dist"), path.join(dir, "dist"), { recursive: true });
    expect(existsSync(path.join(dir, "node_modules"))).toBe(false);
    const w = makeWeights(n * k, "heavy", 5);
    writeFileSync(path.join(dir, "w.bin"), w);
    const out = runNode(
      dir,
      `import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
const m = createRequire(import.meta.url)("./dist/kernels/${PLAT}/quantgate_kernels.node");
const b = readFileSync("w.bin");
const w = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
const bpr = Math.ceil(${k} / 32);
const codes = new Uint8Array(${n} * bpr * 32), scales = new Float32Array(${n} * bpr), zp = new Uint8Array(${n} * bpr);
m.quantizeInt(w, ${n}, ${k}, 4, 32, false, true, codes, scales, zp, 2);
console.log(JSON.stringify({ isa: m.isa(), impl: m.kernelImpl(0, 1), codes: Buffer.from(codes).toString("base64"),
  scales: Buffer.from(scales.buffer).toString("base64"), zp: Buffer.from(zp).toString("base64") }));
`,
    );
    // The kernel name the addon reports: the dispatch picked an x86 SIMD path (or scalar on an old CPU).
    expect(["avx512", "avx2", "scalar"]).toContain(out.isa);
    if (out.isa !== "scalar") expect(out.impl).toBe(2);
    const ref = quantizeBlockwiseRef(w, n, k, spec);
    expect(out.codes).toBe(Buffer.from(ref.codes).toString("base64"));
    expect(out.scales).toBe(Buffer.from(ref.scales.buffer).toString("base64"));
    expect(out.zp).toBe(Buffer.from(ref.zeroPoints).toString("base64"));
  });

  it("is what the loader picks where there is no dev build, and the reasons say so", () => {
    const dir = path.join(tmp, "loader");
    const lib = compiledLib();
    // the compiled modules only (the loader imports no npm package)
    cpSync(lib, path.join(dir, "lib"), { recursive: true, filter: (src) => !src.endsWith(".d.ts") && !src.endsWith(".map") });
    writeFileSync(path.join(dir, "package.json"), JSON.stringify({ type: "module" }));
    cpSync(path.join(ROOT, "dist/kernels"), path.join(dir, "dist/kernels"), { recursive: true });
    const load = `import { loadKernels } from "./lib/kernels/index.js";
const k = await loadKernels();
console.log(JSON.stringify({ backend: k.backend, isa: k.isa, reasons: k.fallbackReasons }));
`;
    const out = runNode(dir, load);
    expect(out.backend).toBe("native");
    expect(["avx512", "avx2", "scalar"]).toContain(out.isa);
    const reasons = (out.reasons as string[]).join("\n");
    expect(reasons).toContain("no dev build (kernels/build/Release)");
    expect(reasons).toContain(`using the prebuilt ${PLAT} addon ${path.join(dir, "dist/kernels", PLAT, "quantgate_kernels.node")}`);

    // Without a prebuilt for this platform-arch (as on darwin / win32): wasm, with the reason.
    rmSync(path.join(dir, "dist/kernels", PLAT), { recursive: true });
    const wasm = runNode(dir, load);
    expect(wasm.backend).toBe("wasm");
    expect((wasm.reasons as string[]).join("\n")).toContain(`native: no dev build and no prebuilt addon for ${PLAT}`);
  });
});
