// History storage backends: a branch (git CLI, one JSON file per config, push retried on conflict)
// and @actions/cache (immutable keys: restore the newest, append, save under a new key).
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { CacheClient } from "../cache/actions.js";
import { appendEntry, parseHistoryFile, serializeHistory, type HistoryEntry, type HistoryFile } from "./entry.js";

const execFileAsync = promisify(execFile);

export interface AppendResult {
  readonly file: HistoryFile;
  /** Every config's history the store holds after the append (for the dashboard). */
  readonly all: HistoryFile[];
  readonly location: string;
  readonly attempts: number;
}

export interface HistoryStore {
  readonly description: string;
  /** The config's history as the given branch's runs left it. */
  read(configId: string, branch: string): Promise<HistoryFile | undefined>;
  append(entry: HistoryEntry, maxEntries: number, extraFiles?: (all: HistoryFile[]) => Record<string, string>): Promise<AppendResult>;
}

export class HistoryError extends Error {
  override readonly name = "HistoryError";
}

const historyFileName = (configId: string): string => `${configId}.json`;

async function readAllHistory(dir: string): Promise<HistoryFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: HistoryFile[] = [];
  for (const n of names.filter((x) => x.endsWith(".json")).sort()) {
    try {
      out.push(parseHistoryFile(await readFile(path.join(dir, n), "utf8"), n));
    } catch {
      // Not a history file (another tool's JSON beside ours): left alone.
    }
  }
  return out;
}

// ---------------------------------------------------------------- branch backend

export interface BranchStoreOptions {
  /** Remote URL (https://github.com/o/r.git, or a local bare repository in tests). */
  readonly remote: string;
  readonly branch: string;
  /** Folder inside the branch. */
  readonly dir: string;
  /** Token for https remotes, sent as actions/checkout sends it (an extra header, never in the URL). */
  readonly token?: string;
  readonly maxAttempts?: number;
  readonly log?: (message: string) => void;
  /** Called before each push; tests use it to push a competing commit. */
  readonly beforePush?: (attempt: number) => Promise<void>;
}

export class BranchHistoryStore implements HistoryStore {
  readonly description: string;
  constructor(private readonly opts: BranchStoreOptions) {
    this.description = `branch ${opts.branch}${opts.dir ? `:${opts.dir}/` : ""}`;
  }

  private async git(cwd: string, args: string[]): Promise<string> {
    const auth =
      this.opts.token && /^https?:/.test(this.opts.remote)
        ? ["-c", `http.extraheader=AUTHORIZATION: basic ${Buffer.from(`x-access-token:${this.opts.token}`).toString("base64")}`]
        : [];
    const identity = ["-c", "user.name=github-actions[bot]", "-c", "user.email=41898282+github-actions[bot]@users.noreply.github.com"];
    try {
      const { stdout } = await execFileAsync("git", [...auth, ...identity, ...args], {
        cwd,
        env: { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_ASKPASS: "echo" },
        maxBuffer: 64 * 1024 * 1024,
      });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new HistoryError(`git ${args[0]} failed: ${(e.stderr || e.message).trim().replace(/AUTHORIZATION: basic \S+/g, "AUTHORIZATION: ***")}`);
    }
  }

  private async init(): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "quantgate-history-"));
    await this.git(dir, ["init", "-q"]);
    await this.git(dir, ["remote", "add", "origin", this.opts.remote]);
    return dir;
  }

  /** Fetches the branch tip; false when the branch does not exist yet. */
  private async fetch(repo: string): Promise<boolean> {
    const refs = await this.git(repo, ["ls-remote", "--heads", "origin", this.opts.branch]);
    if (!refs.trim()) return false;
    await this.git(repo, ["fetch", "-q", "--depth=1", "origin", `+refs/heads/${this.opts.branch}:refs/remotes/origin/${this.opts.branch}`]);
    return true;
  }

  private filePath(configId: string): string {
    return path.posix.join(this.opts.dir || ".", historyFileName(configId));
  }

  async read(configId: string): Promise<HistoryFile | undefined> {
    const repo = await this.init();
    try {
      if (!(await this.fetch(repo))) return undefined;
      let text: string;
      try {
        text = await this.git(repo, ["show", `refs/remotes/origin/${this.opts.branch}:${path.posix.normalize(this.filePath(configId))}`]);
      } catch {
        return undefined;
      }
      return parseHistoryFile(text, `${this.opts.branch}:${this.filePath(configId)}`);
    } finally {
      await rm(repo, { recursive: true, force: true });
    }
  }

  async append(entry: HistoryEntry, maxEntries: number, extraFiles?: (all: HistoryFile[]) => Record<string, string>): Promise<AppendResult> {
    const repo = await this.init();
    const maxAttempts = this.opts.maxAttempts ?? 5;
    try {
      for (let attempt = 1; ; attempt++) {
        const exists = await this.fetch(repo);
        if (exists) {
          await this.git(repo, ["checkout", "-q", "-f", "-B", this.opts.branch, `refs/remotes/origin/${this.opts.branch}`]);
          await this.git(repo, ["clean", "-q", "-fdx"]);
        } else {
          await this.git(repo, ["checkout", "-q", "-f", "--orphan", `${this.opts.branch}-new-${attempt}`]);
          await this.git(repo, ["rm", "-q", "-rf", "--ignore-unmatch", "."]);
        }
        const dataDir = path.join(repo, this.opts.dir);
        await mkdir(dataDir, { recursive: true });
        const target = path.join(dataDir, historyFileName(entry.config));
        let before: HistoryFile | undefined;
        try {
          before = parseHistoryFile(await readFile(target, "utf8"), this.filePath(entry.config));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        }
        const file = appendEntry(before, entry, maxEntries);
        await writeFile(target, serializeHistory(file));
        const all = await readAllHistory(dataDir);
        for (const [name, text] of Object.entries(extraFiles?.(all) ?? {})) await writeFile(path.join(dataDir, name), text);
        await this.git(repo, ["add", "-A", "--", this.opts.dir || "."]);
        await this.git(repo, ["commit", "-q", "--allow-empty", "-m", `quantgate: ${entry.config} at ${entry.commit.slice(0, 7) || "local"}`]);
        await this.opts.beforePush?.(attempt);
        try {
          await this.git(repo, ["push", "-q", "origin", `HEAD:refs/heads/${this.opts.branch}`]);
          return { file, all, location: `${this.opts.branch}:${this.filePath(entry.config)}`, attempts: attempt };
        } catch (err) {
          if (attempt >= maxAttempts)
            throw new HistoryError(`pushing history to ${this.opts.branch} failed after ${attempt} attempts: ${(err as Error).message}`);
          this.opts.log?.(`history push to ${this.opts.branch} rejected (attempt ${attempt}): another run pushed first; retrying on top of it`);
          await new Promise((r) => setTimeout(r, 200 * attempt + Math.floor(Math.random() * 300)));
        }
      }
    } finally {
      await rm(repo, { recursive: true, force: true });
    }
  }
}

// ---------------------------------------------------------------- @actions/cache backend

export interface CacheStoreOptions {
  readonly client: CacheClient;
  /** Folder (relative to the workspace, the same on save and restore) the history file lives in. */
  readonly folder: string;
  /** The branch whose runs are appended (the current branch). */
  readonly branch: string;
  /** Makes each saved key unique (run id and attempt). */
  readonly runKey: string;
}

export class CacheHistoryStore implements HistoryStore {
  readonly description = "@actions/cache";
  constructor(private readonly opts: CacheStoreOptions) {}

  private prefix(configId: string, branch: string): string {
    return `quantgate-history-${configId}-${branch}-`;
  }

  private async restore(configId: string, branch: string): Promise<HistoryFile | undefined> {
    if (!this.opts.client.available())
      throw new HistoryError("the cache service is not available on this runner (ACTIONS_CACHE_URL / ACTIONS_RESULTS_URL unset)");
    const folder = path.join(this.opts.folder, branch.replace(/[^A-Za-z0-9._-]+/g, "-"));
    await rm(folder, { recursive: true, force: true });
    await mkdir(folder, { recursive: true });
    const prefix = this.prefix(configId, branch);
    const hit = await this.opts.client.restore([folder], `${prefix}${this.opts.runKey}`, [prefix]);
    if (!hit) return undefined;
    try {
      return parseHistoryFile(await readFile(path.join(folder, historyFileName(configId)), "utf8"), `cache ${hit}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  read(configId: string, branch: string): Promise<HistoryFile | undefined> {
    return this.restore(configId, branch);
  }

  async append(entry: HistoryEntry, maxEntries: number, extraFiles?: (all: HistoryFile[]) => Record<string, string>): Promise<AppendResult> {
    const before = await this.restore(entry.config, this.opts.branch);
    const file = appendEntry(before, entry, maxEntries);
    const folder = path.join(this.opts.folder, this.opts.branch.replace(/[^A-Za-z0-9._-]+/g, "-"));
    await writeFile(path.join(folder, historyFileName(entry.config)), serializeHistory(file));
    for (const [name, text] of Object.entries(extraFiles?.([file]) ?? {})) await writeFile(path.join(folder, name), text);
    const key = `${this.prefix(entry.config, this.opts.branch)}${this.opts.runKey}`;
    await this.opts.client.save([folder], key);
    return { file, all: [file], location: `cache key ${key}`, attempts: 1 };
  }
}
