// Annotations: each failed or warning rule points at the line of quantgate.yml that set its limit.
import type { RuleResult } from "../gate/index.js";
import type { Report } from "../report/types.js";
import { singleLine } from "../util/escape.js";

export interface Annotation {
  readonly level: "error" | "warning";
  readonly title: string;
  readonly message: string;
  readonly file: string;
  readonly line: number | undefined;
}

/**
 * The config key that set a rule's limit: `gate.<rule>` for gate rules, the rule id itself when it is
 * already dotted (`regression.max_size_increase_pct`), or what `origins` says (release-mode limits).
 */
export function ruleKey(rule: RuleResult, origins: ReadonlyMap<string, string> = new Map()): string {
  return origins.get(rule.rule) ?? (rule.rule.includes(".") ? rule.rule : `gate.${rule.rule}`);
}

/** The nearest line the file sets for a dotted key (the key itself, else its closest parent). */
export function lineOf(lines: Readonly<Record<string, number>>, key: string): number | undefined {
  for (let parts = key.split("."); parts.length > 0; parts = parts.slice(0, -1)) {
    const line = lines[parts.join(".")];
    if (line !== undefined) return line;
  }
  return undefined;
}

export function ruleAnnotations(
  report: Report,
  file: string,
  lines: Readonly<Record<string, number>>,
  origins: ReadonlyMap<string, string> = new Map(),
): Annotation[] {
  const out: Annotation[] = [];
  for (const r of report.gate.rules) {
    if (r.status === "pass") continue;
    out.push({
      level: r.status === "fail" ? "error" : "warning",
      // Names in rules and messages come from models and configs: one line each, no control characters.
      title: singleLine(`QuantGate ${r.rule}`),
      message: singleLine(r.message),
      file,
      line: lineOf(lines, ruleKey(r, origins)),
    });
  }
  return out;
}
