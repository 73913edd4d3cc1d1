// The CI part of the one markdown body (job summary and PR comment): base-branch comparison,
// per-layer changes against the base, cache hits, release mode and links to the run and the artifact.
import { fmt, type RuleResult } from "../gate/index.js";
import type { Comparison, RegressionResult } from "../history/regression.js";
import { safeUrl } from "../dashboard/render.js";
import { renderMarkdown } from "../report/markdown.js";
import type { Report } from "../report/types.js";
import { codeSpan, escapeMarkdown as esc } from "../util/escape.js";

export interface CiSection {
  readonly mode: "check" | "release" | "search";
  readonly baseBranch?: string;
  readonly regression?: RegressionResult;
  /** Why there is no base comparison on a pull request. */
  readonly baseMissing?: string;
  readonly cacheLine?: string;
  readonly runUrl?: string;
  readonly artifact?: { readonly name: string; readonly url?: string; readonly files: number };
  readonly artifactNote?: string;
  readonly releaseRecord?: string;
  readonly historyNote?: string;
}

export type CiReport = Report & { readonly ci?: CiSection };

const ICON: Record<string, string> = { pass: "✅ pass", warn: "⚠️ warn", fail: "❌ fail" };

function show(v: number | undefined, c: Comparison): string {
  return v === undefined || !Number.isFinite(v) ? "—" : fmt(v, c.unit);
}

function change(c: Comparison): string {
  if (c.change === undefined || !Number.isFinite(c.change)) return "—";
  const sign = c.change >= 0 ? "+" : "";
  const body = c.changeUnit === "%" ? `${sign}${c.change.toFixed(2)}%` : `${sign}${fmt(c.change, c.changeUnit)}`;
  const f = (x: number): string => (c.changeUnit === "%" ? `${x.toFixed(2)}%` : fmt(x, c.changeUnit));
  const ci = c.interval ? `${Math.round(c.interval.level * 100)}% CI [${f(c.interval.lo)}, ${f(c.interval.hi)}]` : undefined;
  // Generated text (intervals, methods): no names from the model or config in it.
  const sub = [ci, c.note].filter(Boolean).join("; ");
  return sub ? `${body}<br><sub>${sub}</sub>` : body;
}

/** The base-branch deltas, placed right after the verdict: ruled metrics and every metric that changed. */
export function renderBaseSection(ci: CiSection, rules: readonly RuleResult[]): string {
  const out: string[] = [];
  const byRule = new Map([...(ci.regression?.rules ?? []), ...rules].map((r) => [r.rule, r]));
  if (ci.mode === "release") {
    out.push(
      `**Release mode**: the stricter limits of the \`release:\` block apply${ci.releaseRecord ? `; pass/fail record ${codeSpan(ci.releaseRecord)}` : ""}.`,
    );
    out.push("");
  }
  const reg = ci.regression;
  if (reg) {
    const sha = reg.base.commit.slice(0, 7);
    const url = safeUrl(reg.base.runUrl);
    const base = url ? `[${esc(sha)}](${url})` : `${codeSpan(sha)}`;
    const shown = reg.comparisons.filter((c) => c.rule || (c.change !== undefined && c.change !== 0) || c.base === undefined || c.current === undefined);
    const unchanged = reg.comparisons.length - shown.length;
    out.push(`### Against the base branch ${codeSpan(ci.baseBranch ?? reg.base.branch ?? "?")} (${base})`);
    out.push("");
    out.push("| Metric | Base | This run | Change | Rule | Status |");
    out.push("| --- | ---: | ---: | ---: | --- | --- |");
    for (const c of shown) {
      if (c.base === undefined && c.current === undefined) continue;
      const rule = c.rule ? byRule.get(c.rule) : undefined;
      const limit = rule?.limit.fail !== undefined ? `≤ ${fmt(rule.limit.fail, rule.unit)} (${codeSpan(rule.rule)})` : rule ? `${codeSpan(rule.rule)}` : "—";
      out.push(`| ${esc(c.label)} | ${show(c.base, c)} | ${show(c.current, c)} | ${change(c)} | ${limit} | ${rule ? ICON[rule.status] : ""} |`);
    }
    if (unchanged > 0) out.push(`\n${unchanged} other metric(s) unchanged.`);
    for (const n of reg.notes) out.push(`\n> ℹ️ ${esc(n)}`);
  } else if (ci.baseMissing) {
    out.push(`> ℹ️ Base-branch comparison skipped: ${ci.baseMissing}`);
  }
  return out.length ? out.join("\n") + "\n" : "";
}

/** Per-layer precision changes against the base, folded with the other details. */
function layerSection(ci: CiSection): string | undefined {
  const reg = ci.regression;
  if (!reg || reg.layers.length === 0) return undefined;
  const sha = reg.base.commit.slice(0, 7);
  const d = (l?: { format: string; blockSize: number; form: string; bitsPerWeight: number }): string =>
    l ? esc(`${l.format} b${l.blockSize} (${l.form}), ${l.bitsPerWeight.toFixed(3)} bpw`) : "—";
  const rows = reg.layers
    .slice(0, 50)
    .map((l) => `| ${codeSpan(l.name)} | ${l.change}${l.fields.length ? `: ${esc(l.fields.join(", "))}` : ""} | ${d(l.before)} | ${d(l.after)} |`);
  if (reg.layers.length > 50) rows.push(`| … ${reg.layers.length - 50} more | | | |`);
  return [
    `<details><summary>Per-layer precision changes against ${esc(sha)} (${reg.layers.length})</summary>`,
    "",
    "| Weight | Change | Base | This run |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
    "</details>",
  ].join("\n");
}

function footerLines(ci: CiSection): string[] {
  const links: string[] = [];
  const run = safeUrl(ci.runUrl);
  if (run) links.push(`[Workflow run](${run})`);
  const art = safeUrl(ci.artifact?.url);
  if (ci.artifact) links.push(art ? `[Artifact ${codeSpan(ci.artifact.name)}](${art})` : `Artifact ${codeSpan(ci.artifact.name)} (${ci.artifact.files} files)`);
  if (ci.artifactNote) links.push(ci.artifactNote);
  if (ci.cacheLine) links.push(ci.cacheLine);
  if (ci.historyNote) links.push(ci.historyNote);
  return links;
}

/** The CI sections alone (base deltas, per-layer changes, links), as they read outside the body. */
export function renderCiMarkdown(ci: CiSection, rules: readonly RuleResult[]): string {
  const parts = [renderBaseSection(ci, rules), layerSection(ci), footerLines(ci).join(" · ")].filter((x) => x);
  return parts.length ? parts.join("\n") + "\n" : "";
}

/** The one body: verdict, base-branch deltas, the metric table, then details and links. */
export function renderBody(report: CiReport): string {
  if (!report.ci) return renderMarkdown(report);
  const layers = layerSection(report.ci);
  return renderMarkdown(report, {
    base: renderBaseSection(report.ci, report.gate.rules),
    details: layers ? [layers] : [],
    footer: footerLines(report.ci),
  });
}
