// Applies an example's gate limits to task metric records through the gate itself (src/gate), leaving out the
// rules on the measure stage's metrics (size, memory, latency), which a task evaluation alone does not produce.
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { gateSchema } from "../../src/config/schema.js";
import { evaluateGate } from "../../src/gate/index.js";
import { GATE_RULES, type RuleDef } from "../../src/gate/rules.js";
import type { MetricRecord } from "../../src/tasks/types.js";

export interface Judged {
  readonly rule: string;
  readonly observed: number | undefined;
  readonly status: "pass" | "warn" | "fail";
}

type Limit = number | { warn?: number; fail?: number };

const MEASURED = new Set(["model_size", "bits_per_weight", "peak_memory", "latency_p50", "latency_p95", "kernel_gemv"]);

export function judge(metrics: readonly MetricRecord[], gate: Record<string, Limit>): Judged[] {
  const taskRules = Object.fromEntries(
    Object.entries(gate).filter(([key]) => (GATE_RULES as readonly RuleDef[]).some((d) => d.key === key && !MEASURED.has(d.metric))),
  );
  return evaluateGate(gateSchema.parse(taskRules), metrics).rules.map((r) => ({ rule: r.rule, observed: r.observed, status: r.status }));
}

/** An example's quantgate.yml as plain data. */
export function exampleConfig(file: string): { recipe: Record<string, unknown>; evaluation: Record<string, unknown>; gate: Record<string, Limit> } {
  return parse(readFileSync(file, "utf8"));
}
