// The CI part of the one markdown body (job summary and PR comment): base-branch comparison,
// per-layer changes against the base, cache hits, release mode and links to the run and the artifact.
import { fmt, type RuleResult } from "../gate/index.js";
import type { Comparison, RegressionResult } from "../history/regression.js";
import { renderMarkdown } from "../report/markdown.js";
import type { Report } from "../report/types.js";
import { escapeHtml, escapeMarkdown } from "../util/escape.js";

export interface CiSection {
  readonly mode: "check" | "release";
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

/** A name (branch, tensor, rule, artifact) as inert inline code: escaped, so it can never become markup. */
const code = (name: string): string => `<code>${escapeMarkdown(name)}</code>`;
/** Free text (notes, messages) as one inert line. */
const text = (t: string): string => escapeMarkdown(t);
/** Only http(s) URLs become links; anything else is shown as text. */
function link(label: string, url: string | undefined): string {
  if (!url || !/^https?:\/\/[^\s<>"]+$/i.test(url)) return label;
  return `<a href="${escapeHtml(url)}">${label}</a>`;
}

function show(v: number | undefined, c: Comparison): string {
  return v === undefined || !Number.isFinite(v) ? "—" : fmt(v, c.unit);
}

function change(c: Comparison): string {
  if (c.change === undefined || !Number.isFinite(c.change)) return "—";
  const sign = c.change >= 0 ? "+" : "";
  const body = c.changeUnit === "%" ? `${sign}${c.change.toFixed(2)}%` : `${sign}${fmt(c.change, c.changeUnit)}`;
  const f = (x: number): string => (c.changeUnit === "%" ? `${x.toFixed(2)}%` : fmt(x, c.changeUnit));
  const ci = c.interval ? `${Math.round(c.interval.level * 100)}% CI [${f(c.interval.lo)}, ${f(c.interval.hi)}]` : undefined;
  const sub = text([ci, c.note].filter(Boolean).join("; "));
  return sub ? `${body}<br><sub>${sub}</sub>` : body;
}

export function renderCiMarkdown(ci: CiSection, rules: readonly RuleResult[]): string {
  const out: string[] = [];
  const byRule = new Map(rules.map((r) => [r.rule, r]));
  if (ci.mode === "release") {
    out.push(`**Release mode**: the stricter limits of the \`release:\` block apply${ci.releaseRecord ? `; pass/fail record ${code(ci.releaseRecord)}` : ""}.`);
    out.push("");
  }
  const reg = ci.regression;
  if (reg) {
    const sha = reg.base.commit.slice(0, 7);
    const base = link(code(sha), reg.base.runUrl);
    out.push(`### Against the base branch ${code(ci.baseBranch ?? reg.base.branch ?? "?")} (${base})`);
    out.push("");
    out.push("| Metric | Base | This run | Change | Rule | Status |");
    out.push("| --- | ---: | ---: | ---: | --- | --- |");
    for (const c of reg.comparisons) {
      if (c.base === undefined && c.current === undefined) continue;
      const rule = c.rule ? byRule.get(c.rule) : undefined;
      const limit = rule?.limit.fail !== undefined ? `≤ ${fmt(rule.limit.fail, rule.unit)} (${code(rule.rule)})` : rule ? code(rule.rule) : "—";
      out.push(`| ${text(c.metric)} | ${show(c.base, c)} | ${show(c.current, c)} | ${change(c)} | ${limit} | ${rule ? ICON[rule.status] : ""} |`);
    }
    for (const n of reg.notes) out.push(`\n> ℹ️ ${text(n)}`);
    if (reg.layers.length > 0) {
      out.push("");
      out.push(`### Per-layer precision changes against ${code(sha)} (${reg.layers.length})`);
      out.push("");
      out.push("| Weight | Change | Base | This run |");
      out.push("| --- | --- | --- | --- |");
      const d = (l?: { format: string; blockSize: number; form: string; bitsPerWeight: number }): string =>
        l ? text(`${l.format} b${l.blockSize} (${l.form}), ${Number(l.bitsPerWeight).toFixed(3)} bpw`) : "—";
      for (const l of reg.layers.slice(0, 50))
        out.push(`| ${code(l.name)} | ${text(l.change)}${l.fields.length ? `: ${text(l.fields.join(", "))}` : ""} | ${d(l.before)} | ${d(l.after)} |`);
      if (reg.layers.length > 50) out.push(`| … ${reg.layers.length - 50} more | | | |`);
    }
    out.push("");
  } else if (ci.baseMissing) {
    out.push(`> ℹ️ Base-branch comparison skipped: ${text(ci.baseMissing)}`);
    out.push("");
  }
  const links: string[] = [];
  if (ci.runUrl) links.push(link("Workflow run", ci.runUrl));
  if (ci.artifact)
    links.push(
      ci.artifact.url ? link(`Artifact ${code(ci.artifact.name)}`, ci.artifact.url) : `Artifact ${code(ci.artifact.name)} (${ci.artifact.files} files)`,
    );
  if (ci.artifactNote) links.push(text(ci.artifactNote));
  if (ci.cacheLine) links.push(text(ci.cacheLine));
  if (ci.historyNote) links.push(text(ci.historyNote));
  if (links.length > 0) out.push(links.join(" · "));
  return out.length ? out.join("\n") + "\n" : "";
}

/** The one body: the report's markdown, then the CI sections. */
export function renderBody(report: CiReport): string {
  const main = renderMarkdown(report);
  if (!report.ci) return main;
  const extra = renderCiMarkdown(report.ci, report.gate.rules);
  return extra ? `${main}\n${extra}` : main;
}
