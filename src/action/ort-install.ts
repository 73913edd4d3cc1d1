// At action run time, ONNX Runtime comes from a given folder, the normal dependency, or the pinned
// onnxruntime-node installed from the npm registry into a tool folder cached with @actions/cache.
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as cache from "@actions/cache";
import * as core from "@actions/core";
import { exec } from "@actions/exec";
import { UserError } from "../errors.js";
import { loadOrt, loadOrtFrom, ORT_VERSION, type LoadedOrt } from "../runtime/ort.js";

/** ONNX Runtime is neither beside the action nor installable: the run cannot evaluate anything. */
export class OrtInstallError extends UserError {}

export interface ResolvedOrt {
  readonly loaded: LoadedOrt;
  /** Folder the measuring child loads from; undefined for the normal dependency. */
  readonly dir: string | undefined;
}

export function ortCacheKey(platform = process.platform, arch = process.arch): string {
  return `quantgate-onnxruntime-node-${ORT_VERSION}-${platform}-${arch}`;
}

export function ortToolDir(): string {
  const root = process.env.RUNNER_TOOL_CACHE || process.env.RUNNER_TEMP || os.tmpdir();
  return path.join(root, "quantgate-onnxruntime-node", ORT_VERSION, `${process.platform}-${process.arch}`);
}

export async function resolveOrt(preinstalled: string | undefined): Promise<ResolvedOrt> {
  if (preinstalled) {
    const dir = path.resolve(preinstalled);
    return { loaded: loadOrtFrom(dir, `onnxruntime-path ${dir}`), dir };
  }
  try {
    return { loaded: await loadOrt(), dir: undefined };
  } catch (err) {
    core.info(`onnxruntime-node is not installed beside the action (${(err as Error).message.split("\n")[0]}); installing ${ORT_VERSION}`);
  }
  const dir = ortToolDir();
  const marker = path.join(dir, "node_modules", "onnxruntime-node", "package.json");
  const key = ortCacheKey();
  let restored = existsSync(marker);
  if (!restored && cache.isFeatureAvailable()) {
    try {
      restored = (await cache.restoreCache([dir], key)) !== undefined && existsSync(marker);
      if (restored) core.info(`onnxruntime-node ${ORT_VERSION} restored from cache (${key})`);
    } catch (err) {
      core.warning(`cache restore of onnxruntime-node failed: ${(err as Error).message}`);
    }
  }
  if (!restored) {
    await mkdir(dir, { recursive: true });
    // ignoreReturnCode: @actions/exec would otherwise throw its own terse error before ours could explain.
    let code: number;
    let why = "";
    try {
      code = await exec("npm", ["install", "--prefix", dir, "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", `onnxruntime-node@${ORT_VERSION}`], {
        env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip" } as Record<string, string>,
        ignoreReturnCode: true,
      });
    } catch (err) {
      code = -1;
      why = ` (${(err as Error).message.split("\n")[0]})`;
    }
    if (code !== 0) {
      throw new OrtInstallError(
        `ONNX Runtime could not be installed: \`npm install onnxruntime-node@${ORT_VERSION}\` ${code === -1 ? "could not start" : `exited with code ${code}`}${why}. ` +
          `The runner needs npm and access to the npm registry, or point the \`onnxruntime-path\` input at a preinstalled onnxruntime-node ${ORT_VERSION}.`,
      );
    }
    if (cache.isFeatureAvailable()) {
      try {
        await cache.saveCache([dir], key);
      } catch (err) {
        core.warning(`cache save of onnxruntime-node failed: ${(err as Error).message}`);
      }
    }
  }
  return { loaded: loadOrtFrom(dir, restored ? `cache ${key}` : `npm install into ${dir}`), dir };
}
