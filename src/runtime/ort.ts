// Access to ONNX Runtime: the module is loaded once (from a given path, the normal dependency,
// or the action's installed tool directory) and sessions are created with fixed threading.
import { createRequire } from "node:module";
import path from "node:path";
import type * as OrtModule from "onnxruntime-node";
import { UserError } from "../errors.js";
import { collectIfPiling } from "../util/gc.js";

export type Ort = typeof OrtModule;
export type Session = OrtModule.InferenceSession;
export type OrtTensor = OrtModule.Tensor;

/** The pinned runtime this release of QuantGate is tested with. */
export const ORT_VERSION = "1.30.0";

export interface LoadedOrt {
  readonly ort: Ort;
  readonly version: string;
  /** Where the module came from, for the report. */
  readonly source: string;
}

let loaded: LoadedOrt | undefined;

/**
 * ONNX Runtime 1.30 keeps a device id and a queue of telemetry events (model file names, error messages) under
 * $XDG_CACHE_HOME or ~/.cache/Microsoft/DeveloperTools/.onnxruntime unless ORT_DISABLE_TELEMETRY is set when the
 * library loads. QuantGate sets it (children inherit it) unless the user set the variable themselves.
 */
export function disableOrtTelemetry(env: NodeJS.ProcessEnv = process.env): void {
  if (env.ORT_DISABLE_TELEMETRY === undefined) env.ORT_DISABLE_TELEMETRY = "1";
}

/** Load onnxruntime-node from a package folder (containing node_modules/onnxruntime-node or the package itself). */
export function loadOrtFrom(dir: string, source: string): LoadedOrt {
  disableOrtTelemetry();
  const require = createRequire(path.join(path.resolve(dir), "noop.js"));
  const candidates = [path.join(dir, "node_modules", "onnxruntime-node"), dir];
  const errors: string[] = [];
  for (const candidate of candidates) {
    try {
      const ort = require(candidate) as Ort;
      const pkg = require(path.join(candidate, "package.json")) as { version: string };
      loaded = { ort, version: pkg.version, source };
      return loaded;
    } catch (err) {
      errors.push(`${candidate}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  throw new UserError(`cannot load onnxruntime-node from ${dir}:\n  ${errors.join("\n  ")}`);
}

/** The normal dependency (CLI, tests, a checkout with node_modules). */
export async function loadOrt(): Promise<LoadedOrt> {
  if (loaded) return loaded;
  disableOrtTelemetry();
  const specifier = "onnxruntime-node";
  const mod = (await import(specifier)) as Ort & { default?: Ort };
  const ort = mod.default ?? mod;
  const require = createRequire(import.meta.url);
  let version = "unknown";
  try {
    version = (require(`${specifier}/package.json`) as { version: string }).version;
  } catch {
    version = ort.env.versions?.common ?? "unknown";
  }
  loaded = { ort, version, source: "node_modules" };
  return loaded;
}

export function setLoadedOrt(value: LoadedOrt): void {
  loaded = value;
}

export function currentOrt(): LoadedOrt {
  if (!loaded) throw new Error("internal: ONNX Runtime used before it was loaded");
  return loaded;
}

export async function createSession(ort: Ort, model: Uint8Array | string, threads: number): Promise<Session> {
  const opts: OrtModule.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    executionProviders: ["cpu"],
  };
  let session: Session;
  try {
    session = typeof model === "string" ? await ort.InferenceSession.create(model, opts) : await ort.InferenceSession.create(model, opts);
  } catch (err) {
    const where = typeof model === "string" ? model : "in-memory model";
    throw new UserError(`ONNX Runtime could not load ${where}: ${(err as Error).message}`);
  }
  // Earlier runs' outputs are collected once they pile up (src/util/gc.ts), before this run allocates more.
  const run = session.run.bind(session) as (...args: unknown[]) => ReturnType<Session["run"]>;
  session.run = ((...args: unknown[]) => {
    collectIfPiling();
    return run(...args);
  }) as Session["run"];
  return session;
}
