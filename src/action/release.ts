// Release mode: the `release:` block's limits replace the normal ones where they are stricter, and the run
// writes a machine-readable pass/fail record that a release job can require.
import path from "node:path";
import type { Config } from "../config/load.js";
import { regressionSchema, type GateLimits, type Limit, type RegressionSettings } from "../config/schema.js";
import { GATE_RULES, REGRESSION_RULES, ruleDirection } from "../gate/rules.js";
import type { Report } from "../report/types.js";
import { writeFileAtomic } from "../util/atomic.js";

export const RELEASE_SCHEMA = "quantgate.release/v1";

/** The stricter of two limits in a direction (smaller maximum, larger minimum), per threshold. */
export function stricterLimit(direction: "max" | "min", a: Limit | undefined, b: Limit | undefined): Limit | undefined {
  if (!a) return b;
  if (!b) return a;
  const pick = (x: number | undefined, y: number | undefined): number | undefined =>
    x === undefined ? y : y === undefined ? x : direction === "max" ? Math.min(x, y) : Math.max(x, y);
  const fail = pick(a.fail, b.fail);
  let warn = pick(a.warn, b.warn);
  // A stricter fail can pass a looser warn: the warning level never exceeds the fail limit.
  if (warn !== undefined && fail !== undefined && (direction === "max" ? warn > fail : warn < fail)) warn = fail;
  return { warn, fail };
}

export interface ReleaseConfig {
  readonly config: Config;
  /** Rule id -> the config key that set its limit (for annotations), where the release block did. */
  readonly origins: Map<string, string>;
}

const sameLimit = (a: Limit | undefined, b: Limit | undefined): boolean => a?.warn === b?.warn && a?.fail === b?.fail;

/** The config a release run gates with; unchanged when there is no release block. */
export function applyRelease(config: Config): ReleaseConfig {
  const origins = new Map<string, string>();
  const release = config.release;
  if (!release) return { config, origins };
  const gate: Record<string, unknown> = { ...config.gate };
  for (const def of GATE_RULES) {
    const rule = def.key;
    const key = rule;
    const r = release.gate[key];
    if (!r) continue;
    const merged = stricterLimit(ruleDirection(def.kind), config.gate[key] as Limit | undefined, r);
    gate[rule] = merged;
    if (!sameLimit(merged, config.gate[key] as Limit | undefined)) origins.set(rule, `release.gate.${rule}`);
  }
  if (release.gate.forbid_slower_than_float && !config.gate.forbid_slower_than_float) {
    gate.forbid_slower_than_float = true;
    origins.set("forbid_slower_than_float", "release.gate.forbid_slower_than_float");
  }
  const baseRegression: RegressionSettings = config.regression ?? regressionSchema.parse({});
  const regression: Record<string, unknown> = { ...baseRegression };
  const limits = REGRESSION_RULES.map((d) => d.key);
  for (const rule of limits) {
    const r = release.regression[rule];
    if (!r) continue;
    const merged = stricterLimit("max", baseRegression[rule] as Limit | undefined, r);
    regression[rule] = merged;
    if (!sameLimit(merged, baseRegression[rule] as Limit | undefined)) origins.set(`regression.${rule}`, `release.regression.${rule}`);
  }
  // Per-metric regression rules: the stricter limit of each key that both blocks set.
  const metrics: Record<string, { max_worse?: Limit | undefined; max_worse_pct?: Limit | undefined }> = { ...baseRegression.metrics };
  for (const [key, limits] of Object.entries(release.regression.metrics ?? {})) {
    const merged = { ...metrics[key] };
    for (const which of ["max_worse", "max_worse_pct"] as const) {
      if (!limits[which]) continue;
      merged[which] = stricterLimit("max", metrics[key]?.[which], limits[which]);
      if (!sameLimit(merged[which], metrics[key]?.[which])) origins.set(`regression.metrics.${key}.${which}`, `release.regression.metrics.${key}.${which}`);
    }
    metrics[key] = merged;
  }
  regression.metrics = metrics;
  regression.confidence = Math.max(baseRegression.confidence, release.regression.confidence ?? 0);
  regression.bootstrap_samples = Math.max(baseRegression.bootstrap_samples, release.regression.bootstrap_samples ?? 0);
  regression.require_base = baseRegression.require_base || release.regression.require_base === true;
  const hasRegression =
    config.regression !== undefined || limits.some((r) => release.regression[r] !== undefined) || Object.keys(release.regression.metrics ?? {}).length > 0;
  return {
    config: Object.freeze({
      ...config,
      gate: gate as GateLimits,
      ...(hasRegression ? { regression: regression as RegressionSettings } : {}),
    }),
    origins,
  };
}

export interface ReleaseRecord {
  readonly schema: typeof RELEASE_SCHEMA;
  readonly verdict: "pass" | "fail";
  readonly config: string;
  readonly commit: string;
  readonly ref: string | undefined;
  readonly runUrl: string | undefined;
  readonly createdAt: string;
  readonly model: { readonly path: string; readonly sha256: string };
  readonly recipeSha256: string;
  readonly quantizedModel: { readonly path: string; readonly sizeBytes: number } | null;
  readonly baseCommit: string | null;
  readonly rules: readonly {
    readonly rule: string;
    readonly status: string;
    readonly observed: number | null;
    readonly fail: number | null;
    readonly warn: number | null;
  }[];
  readonly errors: readonly string[];
}

export function releaseRecord(report: Report, meta: { config: string; commit: string; ref?: string; runUrl?: string; baseCommit?: string }): ReleaseRecord {
  return {
    schema: RELEASE_SCHEMA,
    verdict: report.verdict,
    config: meta.config,
    commit: meta.commit,
    ref: meta.ref,
    runUrl: meta.runUrl,
    createdAt: report.createdAt,
    model: { path: report.float.path, sha256: report.hashes.model },
    recipeSha256: report.hashes.recipe,
    quantizedModel: report.quantized ? { path: report.quantized.path, sizeBytes: report.quantized.sizeBytes } : null,
    baseCommit: meta.baseCommit ?? null,
    rules: report.gate.rules.map((r) => ({
      rule: r.rule,
      status: r.status,
      observed: r.observed === undefined || !Number.isFinite(r.observed) ? null : r.observed,
      fail: r.limit.fail ?? null,
      warn: r.limit.warn ?? null,
    })),
    errors: report.gate.errors,
  };
}

export async function writeReleaseRecord(outputDir: string, name: string, record: ReleaseRecord): Promise<string> {
  const file = path.resolve(outputDir, name);
  await writeFileAtomic(file, JSON.stringify(record, null, 2) + "\n");
  return file;
}
