// Issue 11.10: every bad input gets an error that names the file and the key or tensor (and the YAML line where
// there is one), with no stack trace; the CLI exits non-zero. One table (test/helpers/bad-input-cases.ts), run
// through the CLI in this process.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cli } from "./helpers/cli.js";
import { CASES } from "./helpers/bad-input-cases.js";
import { writeClassifierFixture } from "./helpers/models.js";

describe(`bad inputs: ${CASES.length} cases, each a named, located error without a stack trace`, () => {
  for (const c of CASES) {
    it(c.what, async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), "qg-bad-"));
      const config = await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n");
      if (c.config) await writeFile(config, c.config(await readFile(config, "utf8")));
      if (c.setup) await c.setup(dir);
      const r = await cli(["run", "-c", path.join(dir, c.configFile ?? "quantgate.yml"), ...(c.args ?? [])]);
      expect(r.status, r.out).not.toBe(0);
      expect(r.out, r.out).toMatch(c.expected);
      expect(r.out).not.toMatch(/\n\s+at .+:\d+:\d+\)?\n/); // no stack trace
      expect(r.out).not.toMatch(/internal error/);
      // No report that could pass for a successful one.
      const report = path.join(dir, "quantgate-out", "quantgate-report.json");
      if (existsSync(report)) expect(JSON.parse(await readFile(report, "utf8")).verdict).toBe("fail");
    });
  }
});

/** A small tmpfs (root only): a real full disk and a real read-only folder. */
function tryMount(dir: string, options: string): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]).status === 0;
}
const MOUNTS: string[] = [];
const CAN_MOUNT = (() => {
  const probe = mkdtempSync(path.join(os.tmpdir(), "qg-mount-probe-"));
  const ok = tryMount(probe, "size=16k");
  if (ok) spawnSync("umount", [probe]);
  return ok;
})();
afterAll(() => {
  for (const m of MOUNTS) spawnSync("umount", ["-l", m]);
});

describe.skipIf(!CAN_MOUNT)("bad environments: a full disk and a read-only output folder (needs root to mount a tmpfs)", () => {
  it("a disk that fills up while the quantized model is written: named file and ENOSPC, no pass report", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-full-"));
    const config = await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n");
    const out = path.join(dir, "quantgate-out");
    await mkdir(out);
    expect(tryMount(out, "size=8k")).toBe(true);
    MOUNTS.push(out);
    const r = await cli(["run", "-c", config]);
    expect(r.status, r.out).not.toBe(0);
    expect(r.out).toMatch(
      /cannot write .*quantgate-out\/(mlp\.quantized(\.level\d\.tmp)?\.onnx|quantgate-report\.json|quantgate\.lock\.json|quantgate-summary\.md): no space left on the device \(ENOSPC\)/,
    );
    expect(r.out).not.toMatch(/internal error/);
    if (existsSync(path.join(out, "quantgate-report.json")))
      expect(JSON.parse(await readFile(path.join(out, "quantgate-report.json"), "utf8")).verdict).toBe("fail");
  });

  it("a read-only output folder: output_dir named with its line and EROFS", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-ro-"));
    const config = await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n");
    const out = path.join(dir, "ro");
    await mkdir(out);
    expect(tryMount(out, "ro,size=8k")).toBe(true);
    MOUNTS.push(out);
    await writeFile(config, `${await readFile(config, "utf8")}output_dir: ro\n`);
    const r = await cli(["run", "-c", config]);
    expect(r.status, r.out).toBe(2);
    expect(r.out).toMatch(/quantgate\.yml:18 output_dir: cannot write to .*\/ro \(read-only file system \(EROFS\)\)/);
  });
});
