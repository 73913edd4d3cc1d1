// What the run is about (event, pull request, branches, commit, links), read once from the runner's environment.
import { readFileSync } from "node:fs";
import path from "node:path";

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

export function readEventPayload(env: NodeJS.ProcessEnv): Json {
  const file = env.GITHUB_EVENT_PATH;
  if (!file) return {};
  try {
    return obj(JSON.parse(readFileSync(file, "utf8")));
  } catch {
    return {};
  }
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
