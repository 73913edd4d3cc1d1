// What the run is about (event, pull request, branches, commit, links), read once from the runner's environment.
import { readFileSync } from "node:fs";
import path from "node:path";
import { UserError } from "../errors.js";

export interface PullRequestInfo {
  readonly number: number;
  readonly baseRef: string;
  readonly baseSha: string | undefined;
  readonly headRef: string;
  readonly headSha: string | undefined;
  /** The head branch lives in another repository: the token is read-only there. */
  readonly fromFork: boolean;
}

export interface GithubContext {
  readonly eventName: string;
  readonly owner: string;
  readonly repo: string;
  readonly serverUrl: string;
  readonly apiUrl: string;
  readonly runId: string;
  readonly runAttempt: string;
  readonly sha: string;
  /** Branch name for push events (refs/heads/x -> x), the head branch for pull requests. */
  readonly branch: string | undefined;
  readonly defaultBranch: string | undefined;
  readonly pullRequest: PullRequestInfo | undefined;
  readonly workspace: string;
  readonly runUrl: string | undefined;
  /** The commit subject, when the event carries it (push). */
  readonly message: string | undefined;
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === "object" ? (v as Json) : {});
const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

/** Set by src/action/event-guard.ts when the event file was unreadable before any module could read it. */
export const EVENT_ERROR_ENV = "QUANTGATE_EVENT_ERROR";

/** The event payload; a missing or malformed event file is an error that names it (the runner always writes one). */
export function readEventPayload(env: NodeJS.ProcessEnv): Json {
  const early = env[EVENT_ERROR_ENV];
  if (early) throw new UserError(`GITHUB_EVENT_PATH: ${early}`);
  const file = env.GITHUB_EVENT_PATH;
  if (!file) return {};
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UserError(`GITHUB_EVENT_PATH: cannot read the event file ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch (err) {
    throw new UserError(`GITHUB_EVENT_PATH: the event file ${file} is not valid JSON (${(err as Error).message})`, file);
  }
  if (!payload || typeof payload !== "object" || Array.isArray(payload)) {
    throw new UserError(`GITHUB_EVENT_PATH: the event file ${file} does not hold a JSON object`, file);
  }
  return payload as Json;
}

/** Pure: the context from environment variables and the event payload. */
export function githubContextFrom(env: NodeJS.ProcessEnv, payload: Json): GithubContext {
  const eventName = env.GITHUB_EVENT_NAME ?? "";
  const repository = obj(payload.repository);
  const [owner = "", repo = ""] = (env.GITHUB_REPOSITORY ?? str(repository.full_name) ?? "/").split("/");
  const serverUrl = (env.GITHUB_SERVER_URL ?? "https://github.com").replace(/\/$/, "");
  const apiUrl = (env.GITHUB_API_URL ?? "https://api.github.com").replace(/\/$/, "");
  const runId = env.GITHUB_RUN_ID ?? "";
  const pr = obj(payload.pull_request);
  let pullRequest: PullRequestInfo | undefined;
  if (typeof pr.number === "number") {
    const base = obj(pr.base);
    const head = obj(pr.head);
    const baseRepo = str(obj(base.repo).full_name);
    const headRepo = str(obj(head.repo).full_name);
    pullRequest = {
      number: pr.number,
      baseRef: str(base.ref) ?? env.GITHUB_BASE_REF ?? "",
      baseSha: str(base.sha),
      headRef: str(head.ref) ?? env.GITHUB_HEAD_REF ?? "",
      headSha: str(head.sha),
      fromFork: baseRepo !== undefined && headRepo !== undefined && baseRepo !== headRepo,
    };
  }
  const ref = env.GITHUB_REF ?? str(payload.ref) ?? "";
  const branch = pullRequest?.headRef || (ref.startsWith("refs/heads/") ? ref.slice("refs/heads/".length) : undefined);
  const headCommit = obj(payload.head_commit);
  return {
    eventName,
    owner,
    repo,
    serverUrl,
    apiUrl,
    runId,
    runAttempt: env.GITHUB_RUN_ATTEMPT ?? "1",
    sha: pullRequest?.headSha ?? env.GITHUB_SHA ?? "",
    branch,
    defaultBranch: str(repository.default_branch),
    pullRequest,
    workspace: env.GITHUB_WORKSPACE ?? process.cwd(),
    runUrl: owner && runId ? `${serverUrl}/${owner}/${repo}/actions/runs/${runId}` : undefined,
    message: str(headCommit.message)?.split("\n")[0],
  };
}

export function readGithubContext(env: NodeJS.ProcessEnv = process.env): GithubContext {
  return githubContextFrom(env, readEventPayload(env));
}

export const isPullRequestEvent = (ctx: GithubContext): boolean =>
  ctx.pullRequest !== undefined && (ctx.eventName === "pull_request" || ctx.eventName === "pull_request_target");

/**
 * Events whose token can write to the base repository while the checked-out tree may come from a pull
 * request: code from that tree (a config-defined metric module) must not run there unless allowed.
 */
export const PRIVILEGED_EVENTS = ["pull_request_target", "workflow_run"] as const;
export const isPrivilegedEvent = (ctx: GithubContext): boolean => (PRIVILEGED_EVENTS as readonly string[]).includes(ctx.eventName);

/** A path relative to the workspace, as annotations and links need it. */
export function workspacePath(ctx: GithubContext, file: string): string {
  const rel = path.relative(ctx.workspace, path.resolve(file));
  return rel.startsWith("..") ? file : rel.split(path.sep).join("/");
}

/** A stable name for a config: history file, comment marker and artifact name. */
export function configId(ctx: GithubContext, configPath: string, name?: string): string {
  if (name) return name;
  const rel = workspacePath(ctx, configPath).replace(/\.ya?ml$/, "");
  return (
    rel
      .replace(/[^A-Za-z0-9._-]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .replace(/^\.+/, "") || "quantgate"
  );
}
