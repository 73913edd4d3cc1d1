// The winning recipe as a change of quantgate.yml: the YAML edited through the `yaml` Document API (comments
// and layout of untouched lines kept), and a unified diff of the two texts.
import { isMap, isNode, isScalar, parseDocument } from "yaml";
import { canonical } from "../cache/index.js";
import { parseConfig } from "../config/load.js";
import type { Recipe } from "../config/schema.js";

/**
 * `text` with its `recipe:` block changed so that it parses to `target`: the preset is dropped (its fields are
 * written out where they matter), then every recipe key whose parsed value differs is set or removed.
 * Returns the new text, and whether it parses back to exactly `target` (checked, never assumed).
 */
export function patchRecipe(text: string, file: string, target: Recipe): { text: string; exact: boolean } {
  // The library re-prints the whole document; only the recipe block is taken from its output, the rest of
  // the file stays byte for byte. Flow collections are printed both ways ([a] and [ a ]), keeping the closer.
  const candidates = [false, true].map((padding) => spliceRecipe(text, editRecipe(text, file, target, padding)));
  const best = candidates.sort((a, b) => changedLines(text, a) - changedLines(text, b))[0]!;
  const exact = canonical(parseConfig(best, file).recipe) === canonical(target);
  return { text: best, exact };
}

function editRecipe(text: string, file: string, target: Recipe, flowCollectionPadding: boolean): string {
  const doc = parseDocument(text);
  const show = (): string => doc.toString({ flowCollectionPadding, lineWidth: 0 });
  if (doc.hasIn(["recipe", "preset"]) && target.preset === undefined) doc.deleteIn(["recipe", "preset"]);
  let out = show();
  const want = target as unknown as Record<string, unknown>;
  // Two passes: a key set in the first can change what another key parses to (none today; cheap to be sure).
  for (let pass = 0; pass < 2; pass++) {
    const have = parseConfig(out, file).recipe as unknown as Record<string, unknown>;
    const keys = new Set([...Object.keys(want), ...Object.keys(have)]);
    let changed = false;
    for (const key of keys) {
      if (canonical(want[key]) === canonical(have[key])) continue;
      changed = true;
      if (want[key] === undefined) doc.deleteIn(["recipe", key]);
      else doc.setIn(["recipe", key], doc.createNode(want[key]));
    }
    if (!changed) break;
    out = show();
  }
  return out;
}

/** Character range of the top-level `recipe:` entry (key to end of value), if the file has one. */
function recipeRange(text: string): [number, number] | undefined {
  const doc = parseDocument(text);
  if (!isMap(doc.contents)) return undefined;
  const pair = doc.contents.items.find((p) => isScalar(p.key) && p.key.value === "recipe");
  const start = isScalar(pair?.key) ? pair.key.range?.[0] : undefined;
  const end = isNode(pair?.value) ? pair.value.range?.[1] : undefined;
  return start !== undefined && end !== undefined ? [start, end] : undefined;
}

function spliceRecipe(original: string, edited: string): string {
  const a = recipeRange(original);
  const b = recipeRange(edited);
  if (!a || !b) return edited;
  return original.slice(0, a[0]) + edited.slice(b[0], b[1]) + original.slice(a[1]);
}

function changedLines(a: string, b: string): number {
  return editScript(a.split("\n"), b.split("\n")).filter((o) => o.kind !== " ").length;
}

type Op = { kind: " " | "-" | "+"; line: string; a: number; b: number };

/** Line edit script by longest common subsequence (configs are short: quadratic is fine). */
function editScript(a: readonly string[], b: readonly string[]): Op[] {
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--) lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) ops.push({ kind: " ", line: a[i]!, a: i++, b: j++ });
    else if (i < n && (j === m || lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) ops.push({ kind: "-", line: a[i]!, a: i++, b: j });
    else ops.push({ kind: "+", line: b[j]!, a: i, b: j++ });
  }
  return ops;
}

function splitLines(text: string): { lines: string[]; finalNewline: boolean } {
  const finalNewline = text.endsWith("\n");
  const lines = text.split("\n");
  if (finalNewline) lines.pop();
  return { lines, finalNewline };
}

/** A unified diff (`--- a/<name>` / `+++ b/<name>`, hunks with `context` lines around each change); "" when equal. */
export function unifiedDiff(before: string, after: string, name: string, context = 3): string {
  const A = splitLines(before);
  const B = splitLines(after);
  const ops = editScript(A.lines, B.lines);
  const changed = ops.map((o, k) => (o.kind !== " " ? k : -1)).filter((k) => k >= 0);
  if (changed.length === 0 && A.finalNewline === B.finalNewline) return "";
  const out = [`--- a/${name}`, `+++ b/${name}`];
  let k = 0;
  while (k < changed.length) {
    let start = Math.max(0, changed[k]! - context);
    let end = Math.min(ops.length, changed[k]! + context + 1);
    while (k + 1 < changed.length && changed[k + 1]! - context <= end) {
      k++;
      end = Math.min(ops.length, changed[k]! + context + 1);
    }
    k++;
    start = Math.max(0, start);
    const hunk = ops.slice(start, end);
    const aLen = hunk.filter((o) => o.kind !== "+").length;
    const bLen = hunk.filter((o) => o.kind !== "-").length;
    const aStart = hunk[0]!.a + (aLen > 0 ? 1 : 0);
    const bStart = hunk[0]!.b + (bLen > 0 ? 1 : 0);
    out.push(`@@ -${aStart}${aLen === 1 ? "" : `,${aLen}`} +${bStart}${bLen === 1 ? "" : `,${bLen}`} @@`);
    for (const o of hunk) {
      out.push(`${o.kind}${o.line}`);
      const last = o.kind === "+" ? o.b === B.lines.length - 1 : o.a === A.lines.length - 1;
      const noNl = o.kind === "+" ? !B.finalNewline : o.kind === "-" ? !A.finalNewline : !A.finalNewline && !B.finalNewline;
      if (last && noNl) out.push("\\ No newline at end of file");
    }
  }
  return out.join("\n") + "\n";
}
