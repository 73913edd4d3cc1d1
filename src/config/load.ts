// Reads quantgate.yml, applies input overrides, validates with zod, and reports errors with file and line.
import { constants } from "node:fs";
import { access, mkdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { isNode, LineCounter, parseDocument, visit, type Document } from "yaml";
import type { z } from "zod";
import { fsReason, UserError } from "../errors.js";
import { clearOutputs } from "../util/atomic.js";
import { containedName, containedPath, isInside, realLocation, type PathAccess, type PathPolicy } from "./paths.js";
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
  /** Where every path must stay (see src/config/paths.ts). */
  readonly paths: PathPolicy;
}

export interface LoadOptions {
  /** The folder paths must stay in; default the config file's folder (the CLI). The action passes GITHUB_WORKSPACE. */
  readonly workspace?: string;
  /** The action never honours `allow_outside_workspace` (a pull request could set it). */
  readonly forbidOutsideReads?: boolean;
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

export async function loadConfig(file: string, overrides: ConfigOverrides = {}, opts: LoadOptions = {}): Promise<Config> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new UserError(`${file}: cannot read config file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const lenient = new TextDecoder("utf-8").decode(bytes);
    const line = lenient.slice(0, Math.max(0, lenient.indexOf("\uFFFD"))).split("\n").length;
    throw new ConfigError(file, [{ path: "", line, message: "not UTF-8 text (save the file as UTF-8)" }]);
  }
  return parseConfig(text, file, overrides, opts);
}

/** Aliases may not expand a document past this many nodes (a "billion laughs" file stops here). */
const MAX_ALIAS_COUNT = 100;

export function parseConfig(text: string, file: string, overrides: ConfigOverrides = {}, opts: LoadOptions = {}): Config {
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
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) ?? {};
  } catch (err) {
    // yaml throws a ReferenceError for an alias bomb or an unresolvable alias: point at the alias.
    const message = (err as Error).message.split("\n")[0]!;
    const aliases: { source: string; offset: number }[] = [];
    visit(doc, { Alias: (_key, node) => void aliases.push({ source: node.source, offset: node.range?.[0] ?? 0 }) });
    const at = aliases.find((a) => message.endsWith(`: ${a.source}`)) ?? aliases[0];
    throw new ConfigError(file, [
      { path: "", line: at ? lineCounter.linePos(at.offset).line : undefined, message: `YAML aliases cannot be expanded: ${message}` },
    ]);
  }
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
  const baseDir = path.dirname(configPath);
  const lines = collectLines(doc, lineCounter);
  const paths: PathPolicy = {
    workspace: path.resolve(opts.workspace ?? baseDir),
    baseDir,
    allowOutsideReads: parsed.data.allow_outside_workspace && !opts.forbidOutsideReads,
    file,
    lines,
  };
  checkPaths(parsed.data, paths);
  return Object.freeze({ ...parsed.data, configPath, baseDir, lines, paths, notices: presetConflicts(data.recipe, overrides) });
}

/**
 * Every path the file names, checked before anything is read or written: reads and writes stay in the
 * workspace, the history folder and release record stay below their folders.
 */
function checkPaths(c: ConfigFile, policy: PathPolicy): void {
  const ev = c.evaluation as Record<string, unknown>;
  const reads: [string, unknown][] = [
    ["model", c.model],
    ["evaluation.dataset", ev.dataset],
    ["evaluation.calibration", ev.calibration],
    ["evaluation.tokenizer", ev.tokenizer],
  ];
  for (const [key, value] of reads) if (typeof value === "string") containedPath(policy, value, key, "read");
  // A metric module is code: inside the workspace always, whatever allow_outside_workspace says.
  const metricModule = (ev.metric as { module?: string } | undefined)?.module;
  if (typeof metricModule === "string") containedPath(policy, metricModule, "evaluation.metric.module", "code");
  // npy labels: a second file beside the dataset (and beside the calibration data).
  const label = ev.label_field;
  if (ev.task === "fidelity" && typeof label === "string" && label.endsWith(".npy")) {
    for (const data of [ev.dataset, ev.calibration]) {
      if (typeof data === "string") containedPath(policy, path.join(path.dirname(data), label), "evaluation.label_field", "read");
    }
  }
  const outputDir = containedPath(policy, c.output_dir, "output_dir", "write");
  if (c.release) containedName(policy, outputDir, c.release.record, "release.record");
  if (c.history) {
    const h = c.history.path;
    const parts = h.split(/[\\/]+/);
    if (path.isAbsolute(h) || /^[A-Za-z]:/.test(h) || parts.includes("..")) {
      throw new ConfigError(policy.file, [
        {
          path: "history.path",
          line: policy.lines["history.path"],
          message: `expected a folder inside the history branch (no absolute path, no ".."), got "${h}"`,
        },
      ]);
    }
  }
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

/**
 * Resolves a path from the config or an input against the config file's folder, contained in the workspace
 * (symlinks followed); `key` names the setting in errors. Without a key, the setting whose value is `p`.
 */
export function resolvePath(config: Config, p: string, key?: string, access: PathAccess = "read"): string {
  return containedPath(config.paths, p, key ?? keyOf(config, p) ?? "path", access);
}

/** The resolver a task's loader gets (TaskLoadContext.resolve). */
export function pathResolver(config: Config): (p: string, key?: string) => string {
  return (p, key) => resolvePath(config, p, key ?? keyOf(config, p));
}

/** The dotted key whose value is `p` (for messages when a caller only has the value). */
function keyOf(config: Config, p: string): string | undefined {
  const visit = (node: unknown, prefix: string): string | undefined => {
    if (typeof node === "string") return node === p ? prefix : undefined;
    if (!node || typeof node !== "object") return undefined;
    for (const [k, v] of Object.entries(node)) {
      if (k === "paths" || k === "lines" || k === "configPath" || k === "baseDir") continue;
      const found = visit(v, prefix ? `${prefix}.${k}` : k);
      if (found) return found;
    }
    return undefined;
  };
  return visit(config, "");
}

/** Creates the output folder (contained in the workspace) and checks that it can be written; names the key and line. */
export async function prepareOutputDir(config: Config): Promise<string> {
  const dir = resolvePath(config, config.output_dir, "output_dir", "write");
  const line = config.lines.output_dir;
  const where = `${config.paths.file}${line ? `:${line}` : ""} output_dir`;
  const existing = await stat(dir).catch(() => undefined);
  if (existing && !existing.isDirectory()) throw new UserError(`${where}: ${dir} exists and is not a folder`, config.paths.file, line);
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new UserError(`${where}: cannot write to ${dir} (${fsReason(err)})`, config.paths.file, line);
  }
  return dir;
}

/**
 * After a failure before the gate ran (bad config, bad input): removes the previous run's report, summary and
 * model from the output folder the config names (or the default), so no stale "pass" report remains.
 * Best effort and contained: a folder outside the workspace is left alone.
 */
export async function clearStaleOutputs(file: string, overrides: ConfigOverrides, workspace?: string): Promise<void> {
  try {
    const configPath = path.resolve(file);
    const baseDir = path.dirname(configPath);
    let outputDir: unknown = overrides.output_dir || undefined;
    let record: unknown;
    if (outputDir === undefined) {
      try {
        const raw = parseDocument(await readFile(configPath, "utf8")).toJS({ maxAliasCount: MAX_ALIAS_COUNT }) as Record<string, unknown> | null;
        outputDir = raw?.output_dir;
        record = (raw?.release as Record<string, unknown> | undefined)?.record;
      } catch {
        // unreadable or not YAML: the default folder
      }
    }
    const dir = path.resolve(baseDir, typeof outputDir === "string" && outputDir ? outputDir : "quantgate-out");
    if (!isInside(realLocation(path.resolve(workspace ?? baseDir)), realLocation(dir))) return;
    await clearOutputs(dir, typeof record === "string" && !record.includes("/") && !record.includes("\\") ? [record] : []);
  } catch {
    // best effort: the failure being reported matters more
  }
}
