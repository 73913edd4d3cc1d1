// Reads quantgate.yml, applies input overrides, validates with zod, and reports errors with file and line.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { isNode, LineCounter, parseDocument, type Document } from "yaml";
import type { z } from "zod";
import { UserError } from "../errors.js";
import { configSchema, PRESETS, type ConfigFile } from "./schema.js";

/** Values that action inputs or CLI flags put over the file's. Dotted keys address nested fields. */
export type ConfigOverrides = Record<string, string | number | boolean | undefined>;

export interface Config extends ConfigFile {
  /** Absolute path of the config file. */
  readonly configPath: string;
  /** Folder the relative paths in the file are resolved against. */
  readonly baseDir: string;
  /** YAML line of each dotted key that the file sets, for annotations. */
  readonly lines: Readonly<Record<string, number>>;
  /** Settings where the config and a preset disagree, and which one wins (logged and reported as warnings). */
  readonly notices?: readonly string[];
}

export class ConfigError extends UserError {
  constructor(
    override readonly file: string,
    readonly issues: readonly { path: string; line?: number; message: string }[],
  ) {
    super(
      `${file}: invalid configuration\n` + issues.map((i) => `  ${file}${i.line ? `:${i.line}` : ""} ${i.path || "(root)"}: ${i.message}`).join("\n"),
      file,
      issues[0]?.line,
    );
  }
}

const OVERRIDE_NUMBERS = new Set(["recipe.block_size", "recipe.accuracy_level", "measure.threads", "measure.runs", "measure.warmup"]);

export async function loadConfig(file: string, overrides: ConfigOverrides = {}): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new UserError(`${file}: cannot read config file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
  return parseConfig(text, file, overrides);
}

export function parseConfig(text: string, file: string, overrides: ConfigOverrides = {}): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({
        path: "",
        line: lineCounter.linePos(e.pos[0]).line,
        message: `YAML syntax error: ${e.message.split("\n")[0]}`,
      })),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(file, [{ path: "", line: 1, message: "expected a mapping of settings at the top level" }]);
  }
  const data = raw as Record<string, unknown>;
  const overrideIssues: { path: string; message: string }[] = [];
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined || value === "") continue;
    setDotted(data, key, coerceOverride(key, value, overrideIssues));
  }
  const parsed = configSchema.safeParse(data);
  const lineOf = (p: readonly PropertyKey[]): number | undefined => yamlLine(doc, lineCounter, p);
  if (!parsed.success || overrideIssues.length > 0) {
    const issues = [
      ...overrideIssues.map((i) => ({ ...i, path: `${i.path} (from input)` })),
      ...(parsed.success ? [] : parsed.error.issues.map((i) => describeIssue(i, lineOf, overrides))),
    ];
    throw new ConfigError(file, issues);
  }
  const configPath = path.resolve(file);
  return Object.freeze({
    ...parsed.data,
    configPath,
    baseDir: path.dirname(configPath),
    lines: collectLines(doc, lineCounter),
    notices: presetConflicts(data.recipe, overrides),
  });
}

/** Recipe fields the config sets itself that its preset sets differently: the config's value wins, and the run says so. */
function presetConflicts(recipe: unknown, overrides: ConfigOverrides): string[] {
  if (typeof recipe !== "object" || recipe === null) return [];
  const r = recipe as Record<string, unknown>;
  const preset = typeof r.preset === "string" ? PRESETS[r.preset] : undefined;
  if (!preset) return [];
  const from = (key: string): string => (overrides[`recipe.${key}`] !== undefined && overrides[`recipe.${key}`] !== "" ? "input" : "config");
  return Object.entries(preset)
    .filter(([key, value]) => key in r && JSON.stringify(r[key]) !== JSON.stringify(value))
    .map(
      ([key, value]) =>
        `recipe.${key}: the ${from(key)}'s ${JSON.stringify(r[key])} wins over preset ${r.preset} (${from("preset")})'s ${JSON.stringify(value)}; a preset only fills the fields not set explicitly`,
    );
}

function coerceOverride(key: string, value: string | number | boolean, issues: { path: string; message: string }[]): unknown {
  if (typeof value !== "string") return value;
  if (OVERRIDE_NUMBERS.has(key)) {
    const n = Number(value);
    if (!Number.isFinite(n)) issues.push({ path: key, message: `expected a number, got "${value}"` });
    return n;
  }
  if (value === "true" || value === "false") return value === "true";
  return value;
}

function setDotted(target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== "object" || next === null) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]!] = value;
}

function describeIssue(
  issue: z.core.$ZodIssue,
  lineOf: (p: readonly PropertyKey[]) => number | undefined,
  overrides: ConfigOverrides,
): { path: string; line?: number; message: string } {
  const p = issue.path;
  const dotted = p.map(String).join(".");
  let message = issue.message;
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys;
    const line = lineOf([...p, keys[0]!]) ?? lineOf(p);
    return { path: dotted, line, message: `unknown key${keys.length > 1 ? "s" : ""} ${keys.map((k) => `"${k}"`).join(", ")}` };
  }
  if (issue.code === "invalid_union") {
    // A limit is "value or {warn, fail}": say what was wrong with the value, not just "Invalid input".
    const inner = issue.errors.flat().find((i) => i.code === "custom") ?? issue.errors[0]?.[0];
    if (inner) message = inner.message;
  }
  if (issue.code === "invalid_type" && message.includes("received undefined")) message = `missing; ${message}`;
  const fromInput = overrides[dotted] !== undefined && overrides[dotted] !== "";
  return { path: fromInput ? `${dotted} (from input)` : dotted, line: lineOf(p), message };
}

/** The line of the deepest node the path reaches in the YAML file. */
function yamlLine(doc: Document, lc: LineCounter, p: readonly PropertyKey[]): number | undefined {
  for (let depth = p.length; depth >= 0; depth--) {
    const node = doc.getIn(p.slice(0, depth) as (string | number)[], true);
    if (isNode(node) && node.range) return lc.linePos(node.range[0]).line;
    if (depth === 0) break;
  }
  return undefined;
}

function collectLines(doc: Document, lc: LineCounter): Record<string, number> {
  const out: Record<string, number> = {};
  const visit = (node: unknown, prefix: string): void => {
    if (!node || typeof node !== "object" || !("items" in node)) return;
    for (const item of (node as { items: unknown[] }).items) {
      if (typeof item === "object" && item !== null && "key" in item) {
        const pair = item as { key: { value?: unknown; range?: [number, number, number] }; value: unknown };
        const key = `${prefix}${String(pair.key?.value)}`;
        if (pair.key?.range) out[key] = lc.linePos(pair.key.range[0]).line;
        visit(pair.value, `${key}.`);
      }
    }
  };
  visit(doc.contents, "");
  return out;
}

/** Resolve a path from the config against the config file's folder. */
export function resolvePath(config: Config, p: string): string {
  return path.resolve(config.baseDir, p);
}
