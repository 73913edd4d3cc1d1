// Issue 11.7: no stale or half-written outputs. A run removes the previous run's report, summary and model
// first, writes each file under a temporary name and renames it, and writes the report last. The file system
// faults (EACCES, a write cut short) come from a fake layer over node:fs/promises.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import * as fsp from "node:fs/promises";
import type * as FsPromises from "node:fs/promises";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { cli } from "./helpers/cli.js";
import { REPO_ROOT } from "./helpers/action.js";
import { writeClassifierFixture } from "./helpers/models.js";

vi.mock("node:fs/promises", async (importOriginal) => {
  const real = await importOriginal<typeof FsPromises>();
  return { ...real, default: real, open: vi.fn(real.open) };
});
const realOpen = (await vi.importActual<typeof FsPromises>("node:fs/promises")).open;

/** A fixture with a previous run's passing outputs in quantgate-out/. */
async function withOldPass(prefix: string): Promise<{ dir: string; config: string; out: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  const config = await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n");
  const out = path.join(dir, "quantgate-out");
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, "quantgate-report.json"), JSON.stringify({ verdict: "pass" }));
  await writeFile(path.join(out, "quantgate-summary.md"), "## QuantGate: ✅ pass\n");
  await writeFile(path.join(out, "mlp.quantized.onnx"), "old model");
  return { dir, config, out };
}

const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: simulated`), { code });
const passReportLeft = async (out: string): Promise<boolean> =>
  existsSync(path.join(out, "quantgate-report.json")) && JSON.parse(await readFile(path.join(out, "quantgate-report.json"), "utf8")).verdict === "pass";

afterEach(() => {
  vi.mocked(fsp.open).mockImplementation(realOpen);
});

describe("no stale or half-written outputs (11.7)", () => {
  it("a config error removes the previous run's pass report, summary and model (CLI)", async () => {
    const { config, out } = await withOldPass("qg-out-cfg-");
    await writeFile(config, `${await readFile(config, "utf8")}  max_colour: blue\n`);
    const r = await cli(["run", "-c", config]);
    expect(r.status).toBe(2);
    expect(readdirSync(out)).toEqual([]);
  });

  it("EACCES while writing the report: named file, exit 2, and no old pass report left", async () => {
    const { config, out } = await withOldPass("qg-out-eacces-");
    vi.mocked(fsp.open).mockImplementation(async (file, ...rest) => {
      if (String(file).endsWith("quantgate-report.json")) throw errno("EACCES");
      return realOpen(file, ...rest);
    });
    const r = await cli(["run", "-c", config]);
    expect(r.status, r.out).toBe(2);
    expect(r.out).toMatch(/error: cannot write .*quantgate-out\/quantgate-report\.json: permission denied \(EACCES\)/);
    expect(await passReportLeft(out)).toBe(false);
    expect(readdirSync(out).filter((f) => f.includes("quantgate-tmp"))).toEqual([]);
  });

  it("a model write cut short leaves no model under its name (no 0-byte or half model), and the gate fails", async () => {
    const { config, out } = await withOldPass("qg-out-cut-");
    vi.mocked(fsp.open).mockImplementation(async (file, ...rest) => {
      const handle = await realOpen(file, ...rest);
      if (!String(file).endsWith("mlp.quantized.onnx")) return handle;
      return {
        writeFile: async (data: Uint8Array) => {
          await handle.write(data.subarray(0, data.length >> 1));
          throw errno("EINTR");
        },
        sync: () => handle.sync(),
        close: () => handle.close(),
      } as unknown as fsp.FileHandle;
    });
    const r = await cli(["run", "-c", config]);
    expect(r.status, r.out).toBe(1);
    expect(r.out).toMatch(/ERROR emit: cannot write .*mlp\.quantized\.onnx/);
    expect(existsSync(path.join(out, "mlp.quantized.onnx"))).toBe(false);
    expect(readdirSync(out).filter((f) => f.includes("quantgate-tmp"))).toEqual([]);
    expect(JSON.parse(await readFile(path.join(out, "quantgate-report.json"), "utf8")).verdict).toBe("fail");
  });

  it("SIGINT during a run leaves neither a 0-byte model nor the old pass report", async () => {
    const { config, out } = await withOldPass("qg-out-sigint-");
    const child = spawn(process.execPath, [path.join(REPO_ROOT, "bin", "quantgate.js"), "run", "-c", config], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    const exited = new Promise<number | null>((resolve) => child.on("close", (code, signal) => resolve(code ?? (signal ? 130 : null))));
    await new Promise<void>((resolve) => {
      child.stderr.on("data", (d: Buffer) => {
        err += d.toString();
        if (/emit/.test(err)) resolve();
      });
      void exited.then(() => resolve());
    });
    child.kill("SIGINT");
    await exited;
    expect(await passReportLeft(out)).toBe(false);
    const model = path.join(out, "mlp.quantized.onnx");
    if (existsSync(model)) expect(statSync(model).size).toBeGreaterThan(1000);
  });
});
