// `mode: search` in the action, in process (dist/ is rebundled by the release step), with the runner's files and
// environment and the local fake GitHub API: the pull-request comment carries the "Suggested recipe" section with
// the quantgate.yml diff, and the patch and lockfile go to the artifact; nothing is committed.
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../src/action/main.js";
import { parseOutputs, runnerEnvironment } from "../helpers/action.js";
import { writeClassifierFixture } from "../helpers/models.js";
import { startFakeGithub, type FakeGithub } from "../github/fake-github.js";
import { pullRequestEvent } from "../github/runner.js";

let gh: FakeGithub;
beforeAll(async () => {
  gh = await startFakeGithub();
});
afterAll(async () => {
  await gh.close();
});

async function runInProcess(cwd: string, inputs: Record<string, string>, extra: Record<string, string>) {
  const { env, outputFile, summaryFile } = runnerEnvironment(cwd, inputs, pullRequestEvent(21), extra);
  const saved = { ...process.env };
  const savedCwd = process.cwd();
  const uploads: { name: string; files: string[] }[] = [];
  const logs: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  Object.assign(process.env, env);
  process.chdir(cwd);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    logs.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  try {
    await run({
      uploader: {
        upload: async (name, files) => {
          uploads.push({ name, files });
          return { id: 1, size: 1 };
        },
      },
      cacheClient: { available: () => false, restore: async () => undefined, save: async () => {} },
    });
  } finally {
    process.stdout.write = write;
    process.chdir(savedCwd);
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
  const exitCode = process.exitCode;
  process.exitCode = 0;
  return { outputs: parseOutputs(await readFile(outputFile, "utf8")), summary: await readFile(summaryFile, "utf8"), uploads, log: logs.join(""), exitCode };
}

describe("mode: search (action, pull request)", () => {
  it("comments the suggested recipe as a quantgate.yml diff beside the current figures, and commits nothing", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-search-action-"));
    const configPath = await writeClassifierFixture(dir, "  max_kl_mean: 0.02\n", {
      samples: 160,
      recipe: "  # reviewed recipe: int8\n  format: int8\n  block_size: 32\n  symmetric: true",
      extra: "search:\n  space:\n    formats: [int8, int4, nf4]\n    block_sizes: [32, 64]\n    algorithms: [rtn, mse]\n  max_full_evaluations: 5\n",
    });
    execFileSync("git", ["init", "-q"], { cwd: dir });
    const before = await readFile(configPath, "utf8");
    const env = {
      GITHUB_API_URL: gh.url,
      GITHUB_REF: "refs/pull/21/merge",
      GITHUB_BASE_REF: "main",
      GITHUB_HEAD_REF: "feature",
      GITHUB_SHA: "e".repeat(40),
      GITHUB_EVENT_NAME: "pull_request",
      GITHUB_REPOSITORY: "acme/models",
      GITHUB_SERVER_URL: "https://github.com",
      GITHUB_RUN_ID: "4242",
      GITHUB_RUN_ATTEMPT: "1",
    };
    const r = await runInProcess(dir, { config: configPath, mode: "search", "github-token": "ghs_fake", cache: "false" }, env);
    expect(r.exitCode ?? 0, r.log).toBe(0);
    const comments = gh.comments.get("acme/models#21") ?? [];
    expect(comments).toHaveLength(1);
    const body = comments[0]!.body;
    await writeFile(path.join(dir, "comment.md"), body);
    expect(body).toContain("### Suggested recipe");
    expect(body).toMatch(/```diff\n--- a\/quantgate\.yml\n\+\+\+ b\/quantgate\.yml\n@@ /);
    expect(body).toContain("-  format: int8");
    expect(body).toMatch(/\| Model size \| [\d.]+ KiB \| [\d.]+ KiB \|/);
    expect(body).toMatch(/Saves \*\*[\d.]+ KiB\*\* of stored size/);
    expect(body).toMatch(/search part: PASS .*holdout part: PASS/);
    expect(body).toMatch(/\| KL divergence \\\(mean\\\) \| [\d.e-]+ ✅ \| [\d.e-]+ ✅ \| [\d.e-]+ ✅ \|/);
    expect(r.summary).toContain("### Suggested recipe");
    // The patch and the lockfile are in the artifact, not committed: the config and the repository are unchanged.
    const files = r.uploads.flatMap((u) => u.files.map((f) => path.basename(f)));
    expect(files).toEqual(expect.arrayContaining(["quantgate.yml.patch", "quantgate.lock.json", "search.json"]));
    expect(await readFile(configPath, "utf8")).toBe(before);
    expect(execFileSync("git", ["rev-list", "--all"], { cwd: dir, encoding: "utf8" }).trim()).toBe("");
  }, 600_000);
});
