// A user metric module: a JS file (or TS, where Node can strip types) whose default export maps float
// outputs, quantized outputs and labels to named numbers (character error rate, IoU, ...).
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { UserError } from "../errors.js";

export interface OutputTensor {
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

/** Per sample (chunk), the selected outputs by name; labels where the data has them. */
export type UserMetricFn = (
  floatOutputs: Record<string, OutputTensor>[],
  quantizedOutputs: Record<string, OutputTensor>[],
  labels: (number | undefined)[],
) => Record<string, number> | Promise<Record<string, number>>;

/**
 * Node's own dynamic import. The bundler (ncc, webpack inside) rewrites `import()` into its module registry,
 * where a file of the user's workspace is not found ("Cannot find module"); `webpackIgnore` leaves it to Node.
 */
const importModule = (specifier: string): Promise<unknown> => import(/* webpackIgnore: true */ specifier);

/** Loads the module's default export (or a named export `metric`). */
export async function loadUserMetric(file: string): Promise<UserMetricFn> {
  let url = pathToFileURL(file).href;
  if (/\.[cm]?ts$/.test(file)) {
    // Node 22.13+ strips TypeScript types itself; older Node needs the module compiled to JS first.
    const strip = (createRequire(import.meta.url)("node:module") as { stripTypeScriptTypes?: (code: string) => string }).stripTypeScriptTypes;
    if (!strip) throw new UserError(`${file}: a TypeScript metric module needs Node 22.13 or newer here (Node ${process.version}); compile it to .mjs`, file);
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-metric-"));
    const out = path.join(dir, path.basename(file).replace(/\.[cm]?ts$/, ".mjs"));
    await writeFile(out, strip(await readFile(file, "utf8")));
    url = pathToFileURL(out).href;
  }
  let mod: { default?: unknown; metric?: unknown };
  try {
    mod = (await importModule(url)) as { default?: unknown; metric?: unknown };
  } catch (err) {
    throw new UserError(`${file}: cannot load the metric module (${(err as Error).message})`, file);
  }
  const fn = typeof mod.default === "function" ? mod.default : mod.metric;
  if (typeof fn !== "function") throw new UserError(`${file}: the metric module must export a function as default (or as "metric")`, file);
  return fn as UserMetricFn;
}

export async function runUserMetric(
  fn: UserMetricFn,
  floatOutputs: Record<string, OutputTensor>[],
  quantizedOutputs: Record<string, OutputTensor>[],
  labels: (number | undefined)[],
): Promise<Record<string, number>> {
  let result: unknown;
  try {
    result = await fn(floatOutputs, quantizedOutputs, labels);
  } catch (err) {
    throw new UserError(`the metric module threw: ${(err as Error).message}`);
  }
  if (typeof result !== "object" || result === null)
    throw new UserError(`the metric module must return an object of named numbers, got ${JSON.stringify(result)}`);
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(result)) {
    if (typeof v !== "number") throw new UserError(`the metric module returned a non-number for "${k}": ${JSON.stringify(v)}`);
    out[k] = v;
  }
  return out;
}
