// The pull-request comment: one per config, found through a hidden marker and its author (the token's own
// identity), created once and then updated in place. Calls retry with backoff and respect rate limits.
import { HttpClient } from "@actions/http-client";
import { Octokit as OctokitCore } from "@octokit/core";
import { paginateRest } from "@octokit/plugin-paginate-rest";
import { restEndpointMethods } from "@octokit/plugin-rest-endpoint-methods";
import { retry } from "@octokit/plugin-retry";
import { throttling } from "@octokit/plugin-throttling";
import { fetch as undiciFetch } from "undici";
import { OptionalStepError } from "../errors.js";

// Built from @octokit/core rather than @actions/github, whose module parses GITHUB_EVENT_PATH when imported
// (a malformed event file would crash the action before it could explain itself).
const QuantgateOctokit = OctokitCore.plugin(restEndpointMethods, paginateRest, retry, throttling);
export type Octokit = InstanceType<typeof QuantgateOctokit>;

/** The login GitHub shows for comments made with a workflow's GITHUB_TOKEN. */
export const ACTIONS_BOT = "github-actions[bot]";
export type CommentMode = "always" | "on-failure" | "never";
export const COMMENT_MODES: readonly CommentMode[] = ["always", "on-failure", "never"];

/** GitHub refuses comment bodies past 65536 characters. */
const MAX_BODY = 65_000;

/** The comment could not be written for lack of permission (fork pull request, read-only token). */
export class CommentPermissionError extends OptionalStepError {
  constructor(message: string) {
    super(message);
    // OptionalStepError's name is a literal type; the subclass still names itself in logs.
    Object.defineProperty(this, "name", { value: "CommentPermissionError" });
  }
}

export const commentMarker = (id: string): string => `<!-- quantgate-comment: ${id} -->`;

export interface CommentTarget {
  readonly owner: string;
  readonly repo: string;
  readonly issueNumber: number;
  readonly marker: string;
  /** Only a comment by this login is ours to update (default: the token's own identity). */
  readonly author?: string;
}

export interface CommentResult {
  readonly action: "created" | "updated" | "unchanged" | "skipped";
  readonly id?: number;
  readonly url?: string;
}

export interface OctokitLog {
  warning(message: string): void;
}

/** Retries (3, with backoff) and waits out primary and secondary rate limits (up to 2 retries each). */
export function createOctokit(token: string, apiUrl: string, log?: OctokitLog, retryAfterBaseMs = 1000): Octokit {
  // The runner's proxy settings (https_proxy, no_proxy) apply as they do for @actions/github.
  const dispatcher = new HttpClient().getAgentDispatcher(apiUrl);
  const limit =
    (kind: string) =>
    (retryAfter: number, options: { method: string; url: string }, _octokit: unknown, retryCount: number): boolean => {
      log?.warning(`GitHub ${kind} rate limit on ${options.method} ${options.url}; retrying after ${retryAfter}s (attempt ${retryCount + 1})`);
      return retryCount < 2;
    };
  return new QuantgateOctokit({
    auth: token,
    baseUrl: apiUrl,
    userAgent: "quantgate",
    retry: { retries: 3, retryAfterBaseValue: retryAfterBaseMs },
    throttle: { onRateLimit: limit("primary"), onSecondaryRateLimit: limit("secondary"), retryAfterBaseValue: retryAfterBaseMs },
    request: dispatcher
      ? { fetch: (url: string, opts: RequestInit) => undiciFetch(url, { ...(opts as object), dispatcher } as Parameters<typeof undiciFetch>[1]) }
      : {},
  });
}

/**
 * The login the token comments as: the user behind a personal access token; for an installation token, which
 * cannot read /user, GraphQL's `viewer` (`<app-slug>[bot]` for a GitHub App's token, github-actions[bot] for a
 * workflow's GITHUB_TOKEN); github-actions[bot] when neither answers.
 */
export async function tokenLogin(octokit: Octokit): Promise<string> {
  try {
    const r = await octokit.rest.users.getAuthenticated();
    if (r.data.login) return r.data.login;
  } catch (err) {
    const status = (err as { status?: number }).status;
    if (status !== 401 && status !== 403 && status !== 404) throw explain(err, "ask GitHub who the token belongs to");
  }
  try {
    const r = await octokit.graphql<{ viewer?: { login?: unknown } }>("query { viewer { login } }");
    const login = r.viewer?.login;
    if (typeof login === "string" && login.length > 0) return login;
  } catch {
    // GitHub Enterprise Server without GraphQL, or a token that may not read it: the workflow token's bot.
  }
  return ACTIONS_BOT;
}

function withMarker(marker: string, body: string): string {
  const full = `${marker}\n${body}`;
  if (full.length <= MAX_BODY) return full;
  return `${full.slice(0, MAX_BODY - 200)}\n\n… (truncated: the full report is in the job summary and the artifact)\n`;
}

function explain(err: unknown, what: string): OptionalStepError {
  const status = (err as { status?: number }).status;
  const message = (err as Error).message ?? String(err);
  if (status === 401 || status === 403 || status === 404) {
    return new CommentPermissionError(
      `cannot ${what} (HTTP ${status}: ${message}); the token needs "pull-requests: write" (fork pull requests get a read-only token). The gate still decides by its rules.`,
    );
  }
  return new OptionalStepError(`cannot ${what}: ${message}`);
}

/**
 * The first comment of the issue that starts with the marker AND was written by `author`: anyone can paste
 * the marker into a comment of their own, and that one must never be edited.
 */
export async function findComment(
  octokit: Octokit,
  t: CommentTarget & { readonly author: string },
): Promise<{ id: number; body: string; url: string } | undefined> {
  let comments: { id: number; body?: string | null; html_url: string; user?: { login?: string } | null }[];
  try {
    comments = await octokit.paginate(octokit.rest.issues.listComments, { owner: t.owner, repo: t.repo, issue_number: t.issueNumber, per_page: 100 });
  } catch (err) {
    throw explain(err, `list the comments of #${t.issueNumber}`);
  }
  const found = comments.find((c) => (c.body ?? "").startsWith(t.marker) && c.user?.login === t.author);
  return found ? { id: found.id, body: found.body ?? "", url: found.html_url } : undefined;
}

/**
 * Creates the comment, or updates the one that carries the marker. With `on-failure`, a new comment is
 * only created when `failing`, but an existing one is still updated so it never shows a stale failure.
 */
export async function upsertComment(octokit: Octokit, t: CommentTarget, body: string, mode: CommentMode, failing: boolean): Promise<CommentResult> {
  if (mode === "never") return { action: "skipped" };
  const author = t.author ?? (await tokenLogin(octokit));
  const existing = await findComment(octokit, { ...t, author });
  const full = withMarker(t.marker, body);
  if (existing) {
    if (existing.body === full) return { action: "unchanged", id: existing.id, url: existing.url };
    try {
      const r = await octokit.rest.issues.updateComment({ owner: t.owner, repo: t.repo, comment_id: existing.id, body: full });
      return { action: "updated", id: r.data.id, url: r.data.html_url };
    } catch (err) {
      throw explain(err, `update comment ${existing.id}`);
    }
  }
  if (mode === "on-failure" && !failing) return { action: "skipped" };
  try {
    const r = await octokit.rest.issues.createComment({ owner: t.owner, repo: t.repo, issue_number: t.issueNumber, body: full });
    return { action: "created", id: r.data.id, url: r.data.html_url };
  } catch (err) {
    throw explain(err, `comment on #${t.issueNumber}`);
  }
}
