// Path containment: every path a config or an input names is resolved against the workspace with symlinks
// followed, and one that lands outside is refused with the key and YAML line that named it.
import { realpathSync } from "node:fs";
import path from "node:path";
import { UserError } from "../errors.js";

/** read: data and models; write: outputs; code: modules QuantGate imports and runs (never outside, even with the opt-in). */
export type PathAccess = "read" | "write" | "code";

export interface PathPolicy {
  /** The folder every path must stay in: GITHUB_WORKSPACE for the action, the config's folder for the CLI. */
  readonly workspace: string;
  /** Folder relative paths are resolved against (the config file's folder). */
  readonly baseDir: string;
  /** `allow_outside_workspace: true` (CLI only): reads may leave the workspace; writes never do. */
  readonly allowOutsideReads: boolean;
  /** The config file, for messages. */
  readonly file: string;
  /** YAML line of each dotted key, for messages. */
  readonly lines: Readonly<Record<string, number>>;
}

/** A path that leaves the workspace; names the key and the YAML line that set it. */
export class PathContainmentError extends UserError {
  constructor(
    message: string,
    file: string,
    line: number | undefined,
    readonly key: string,
  ) {
    super(message, file, line);
  }
}

/**
 * The real location of a path that may not exist yet: the nearest existing ancestor with its symlinks
 * resolved, plus the part below it that does not exist (which cannot hold a symlink).
 */
export function realLocation(abs: string): string {
  let existing = abs;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(realpathSync(existing), ...rest.reverse());
    } catch {
      const parent = path.dirname(existing);
      if (parent === existing) return abs;
      rest.push(path.basename(existing));
      existing = parent;
    }
  }
}

/** Whether `inner` is `outer` or lies below it (both absolute, normalized). */
export function isInside(outer: string, inner: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === "" || (!rel.startsWith(`..${path.sep}`) && rel !== ".." && !path.isAbsolute(rel));
}

function lineOfKey(lines: Readonly<Record<string, number>>, key: string): number | undefined {
  for (let parts = key.replace(/\[\d+\]/g, "").split("."); parts.length > 0; parts = parts.slice(0, -1)) {
    const line = lines[parts.join(".")];
    if (line !== undefined) return line;
  }
  return undefined;
}

/**
 * Resolves `p` (relative to `policy.baseDir`, or absolute) and checks that it stays in the workspace once
 * symlinks are followed. Returns the absolute (lexical) path; throws PathContainmentError naming `key`.
 */
export function containedPath(policy: PathPolicy, p: string, key: string, access: PathAccess = "read"): string {
  const line = lineOfKey(policy.lines, key);
  const where = `${policy.file}${line ? `:${line}` : ""} ${key}`;
  if (p.includes("\0")) throw new PathContainmentError(`${where}: the path contains a NUL character`, policy.file, line, key);
  const abs = path.resolve(policy.baseDir, p);
  if (access === "read" && policy.allowOutsideReads) return abs;
  const root = realLocation(path.resolve(policy.workspace));
  const real = realLocation(abs);
  if (isInside(root, real)) return abs;
  const via = real !== abs ? ` (through a symlink: it resolves to ${real})` : "";
  const lift =
    access === "read"
      ? "; the CLI reads outside it only with `allow_outside_workspace: true`"
      : access === "code"
        ? "; code (a metric module) is only loaded from inside it"
        : "; outputs are always written inside it";
  throw new PathContainmentError(`${where}: "${p}" lies outside the workspace ${root}${via}${lift}`, policy.file, line, key);
}

/** A file name below a folder (release record, history file): relative, no `..`, never absolute. */
export function containedName(policy: PathPolicy, folder: string, name: string, key: string): string {
  const target = path.resolve(folder, name);
  if (path.isAbsolute(name) || !isInside(path.resolve(folder), target) || target === path.resolve(folder)) {
    const line = lineOfKey(policy.lines, key);
    throw new PathContainmentError(
      `${policy.file}${line ? `:${line}` : ""} ${key}: "${name}" must be a file name inside ${folder} (no absolute path, no "..")`,
      policy.file,
      line,
      key,
    );
  }
  return containedPath(policy, target, key, "write");
}
