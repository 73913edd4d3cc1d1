// Applies an example's gate limits to task metric records by the rule table of src/metrics/rules.ts: the check the
// gate will make once the tasks are registered, so the examples can be judged before that.
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { TASK_METRIC_RULES } from "../../src/metrics/rules.js";
import type { MetricRecord } from "../../src/tasks/types.js";

export interface Judged {
  readonly rule: string;
  readonly observed: number | undefined;
  readonly status: "pass" | "warn" | "fail";
}

type Limit = number | { warn?: number; fail?: number };

export function judge(metrics: readonly MetricRecord[], gate: Record<string, Limit>): Judged[] {
  const out: Judged[] = [];
  for (const [rule, raw] of Object.entries(gate)) {
    const def = TASK_METRIC_RULES.find((d) => d.rule === rule);
    if (!def) continue; // not a task-metric rule (size, latency...)
    const limit = typeof raw === "number" ? { fail: raw } : raw;
    const m = metrics.find((x) => x.key === def.metric);
    let observed: number | undefined;
    if (m) {
      if (def.kind === "value_max" || def.kind === "value_min") observed = m.quantized;
      else if (def.kind === "drop_points" && m.float !== undefined) observed = (m.direction === "higher" ? m.float - m.quantized : m.quantized - m.float) * 100;
    }
    const worse = (x: number, l: number): boolean => (def.kind === "value_min" ? x < l : x > l);
    const status =
      observed === undefined || !Number.isFinite(observed) || (limit.fail !== undefined && worse(observed, limit.fail))
        ? "fail"
        : limit.warn !== undefined && worse(observed, limit.warn)
          ? "warn"
          : "pass";
    out.push({ rule, observed, status });
  }
  return out;
}

/** An example's quantgate.yml as plain data. */
export function exampleConfig(file: string): { recipe: Record<string, unknown>; evaluation: Record<string, unknown>; gate: Record<string, Limit> } {
  return parse(readFileSync(file, "utf8"));
}
