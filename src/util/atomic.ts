// Outputs are never stale or half-written: a run first removes the previous run's outputs, and each file is
// written under a temporary name in the same folder and renamed into place (a rename is atomic on POSIX).
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, unlinkSync } from "node:fs";
import { open, readdir, rename, rm, unlink } from "node:fs/promises";
import path from "node:path";
import { OutputWriteError } from "../errors.js";

/** Files a run writes into its output folder; removed when a run starts (and when it fails before writing). */
export const OUTPUT_FILES = ["quantgate-report.json", "quantgate-summary.md", "quantgate.lock.json", "dashboard.html"] as const;
const TEMP_MARK = ".quantgate-tmp-";

/** Temporary files of this process not yet renamed: removed if the process is interrupted. */
const pending = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const f of pending) {
      try {
        unlinkSync(f);
      } catch {
        // already gone
      }
    }
  });
}

/** Writes `data` to a temporary file beside `file`, flushes it, and renames it over `file`. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  installExitHook();
  const tmp = path.join(path.dirname(file), `${TEMP_MARK}${process.pid}-${randomBytes(4).toString("hex")}-${path.basename(file)}`);
  pending.add(tmp);
  try {
    const handle = await open(tmp, "wx", 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw (err as NodeJS.ErrnoException).code ? new OutputWriteError(file, err) : err;
  } finally {
    pending.delete(tmp);
  }
}

/**
 * Removes the previous run's report, summary, lockfile, dashboard, release record and quantized models
 * (and temporary files an interrupted run left), so that a failed or interrupted run never leaves an old
 * "pass" report in place. A folder that does not exist is fine.
 */
export async function clearOutputs(dir: string, extra: readonly string[] = []): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  const wanted = new Set<string>([...OUTPUT_FILES, ...extra]);
  for (const name of names) {
    if (wanted.has(name) || name.endsWith(".quantized.onnx") || name.endsWith(".quantized.onnx.data") || name.startsWith(TEMP_MARK)) {
      await rm(path.join(dir, name), { force: true });
      removed.push(name);
    }
  }
  return removed;
}

/** The synchronous form, for a process that is about to exit. */
export function clearOutputsSync(dir: string, extra: readonly string[] = []): void {
  if (!existsSync(dir)) return;
  const wanted = new Set<string>([...OUTPUT_FILES, ...extra]);
  for (const name of readdirSync(dir)) {
    if (wanted.has(name) || name.endsWith(".quantized.onnx") || name.endsWith(".quantized.onnx.data") || name.startsWith(TEMP_MARK)) {
      try {
        unlinkSync(path.join(dir, name));
      } catch {
        // best effort
      }
    }
  }
}
