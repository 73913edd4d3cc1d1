// Runs the bundled action as the runner does (node dist/index.js with INPUT_* and GITHUB_* set), asynchronously,
// so that servers in the test process (the fake GitHub API) can answer while it runs.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { ACTION_ENTRY, ACTION_NODE, parseOutputs, runnerEnvironment, type ActionRun } from "../helpers/action.js";

export interface CiActionRun extends ActionRun {
  readonly ms: number;
}

export interface RunOptions {
  readonly eventName: string;
  readonly event: unknown;
  readonly env?: Record<string, string>;
}

export async function runActionAsync(cwd: string, inputs: Record<string, string>, opts: RunOptions): Promise<CiActionRun> {
  const { env, outputFile, summaryFile } = runnerEnvironment(cwd, inputs, opts.event, {
    GITHUB_EVENT_NAME: opts.eventName,
    GITHUB_REPOSITORY: "acme/models",
    GITHUB_SERVER_URL: "https://github.com",
    GITHUB_RUN_ID: String(4000 + Math.floor(Math.random() * 1000)),
    GITHUB_RUN_ATTEMPT: "1",
    ...opts.env,
  });
  const t0 = performance.now();
  const child = spawn(ACTION_NODE, [ACTION_ENTRY], { cwd, env });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const status = await new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return {
    status,
    stdout: out,
    outputs: parseOutputs(readFileSync(outputFile, "utf8")),
    summary: readFileSync(summaryFile, "utf8"),
    ms: performance.now() - t0,
  };
}

export const pullRequestEvent = (number: number, base = "main", head = "feature", fork = false): unknown => ({
  action: "synchronize",
  number,
  pull_request: {
    number,
    base: { ref: base, sha: "b".repeat(40), repo: { full_name: "acme/models" } },
    head: { ref: head, sha: `${number}`.padStart(40, "c"), repo: { full_name: fork ? "someone/models" : "acme/models" } },
  },
  repository: { full_name: "acme/models", default_branch: "main" },
});

export const pushEvent = (sha: string, branch = "main", message = "Update the model"): unknown => ({
  ref: `refs/heads/${branch}`,
  after: sha,
  head_commit: { id: sha, message },
  repository: { full_name: "acme/models", default_branch: "main" },
});
