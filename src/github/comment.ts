// The pull-request comment: one per config, found through a hidden marker, created once and then updated in place.
import { getOctokit } from "@actions/github";
import { OptionalStepError } from "../errors.js";

export type Octokit = ReturnType<typeof getOctokit>;
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
}

export interface CommentResult {
  readonly action: "created" | "updated" | "unchanged" | "skipped";
  readonly id?: number;
  readonly url?: string;
}

export function createOctokit(token: string, apiUrl: string): Octokit {
  return getOctokit(token, { baseUrl: apiUrl });
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

/** The first comment of the issue that carries the marker. */
export async function findComment(octokit: Octokit, t: CommentTarget): Promise<{ id: number; body: string; url: string } | undefined> {
  let comments: { id: number; body?: string | null; html_url: string }[];
  try {
    comments = await octokit.paginate(octokit.rest.issues.listComments, { owner: t.owner, repo: t.repo, issue_number: t.issueNumber, per_page: 100 });
  } catch (err) {
    throw explain(err, `list the comments of #${t.issueNumber}`);
  }
  const found = comments.find((c) => (c.body ?? "").includes(t.marker));
  return found ? { id: found.id, body: found.body ?? "", url: found.html_url } : undefined;
}

/**
 * Creates the comment, or updates the one that carries the marker. With `on-failure`, a new comment is
 * only created when `failing`, but an existing one is still updated so it never shows a stale failure.
 */
export async function upsertComment(octokit: Octokit, t: CommentTarget, body: string, mode: CommentMode, failing: boolean): Promise<CommentResult> {
  if (mode === "never") return { action: "skipped" };
  const existing = await findComment(octokit, t);
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
