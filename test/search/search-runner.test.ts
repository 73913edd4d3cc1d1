// `mode: search` run the way the GitHub runner runs the action: `node <entry>` (lib/index.js, or dist/index.js with
// QUANTGATE_ACTION_ENTRY=dist) in a child process with INPUT_* and GITHUB_* set, against the local fake GitHub API,
// on a small classifier with a tight search budget. The pull-request comment carries the "Suggested recipe" section
// with the quantgate.yml diff, and the patch is written to the output folder.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeClassifierFixture } from "../helpers/models.js";
import { startFakeGithub, type FakeGithub } from "../github/fake-github.js";
import { pullRequestEvent, runActionAsync } from "../github/runner.js";

let gh: FakeGithub;
beforeAll(async () => {
  gh = await startFakeGithub();
});
afterAll(async () => {
  await gh.close();
});

describe("mode: search (runner-style, node on the action entry)", () => {
  it("exits 0, comments the suggested recipe as a unified diff and writes the patch to the output folder", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-search-runner-"));
    const configPath = await writeClassifierFixture(dir, "  max_kl_mean: 0.02\n", {
      samples: 120,
      recipe: "  format: int8\n  block_size: 32\n  symmetric: true",
      extra: "search:\n  space:\n    formats: [int8, int4]\n    block_sizes: [32]\n    algorithms: [rtn]\n  max_full_evaluations: 3\n",
    });
    execFileSync("git", ["init", "-q"], { cwd: dir });
    const before = await readFile(configPath, "utf8");
    const r = await runActionAsync(
      dir,
      { config: configPath, mode: "search", "github-token": "ghs_fake", cache: "false" },
      {
        eventName: "pull_request",
        event: pullRequestEvent(33),
        env: {
          GITHUB_API_URL: gh.url,
          GITHUB_REF: "refs/pull/33/merge",
          GITHUB_BASE_REF: "main",
          GITHUB_HEAD_REF: "feature",
          GITHUB_SHA: "f".repeat(40),
        },
      },
    );
    expect(r.status, r.stdout).toBe(0);
    expect(r.ms).toBeLessThan(60_000);
    const comments = gh.comments.get("acme/models#33") ?? [];
    expect(comments, r.stdout).toHaveLength(1);
    const body = comments[0]!.body;
    expect(body).toContain("### Suggested recipe");
    expect(body).toMatch(/```diff\n--- a\/quantgate\.yml\n\+\+\+ b\/quantgate\.yml\n@@ [-+\d, ]+ @@\n/);
    expect(body).toMatch(/\n- {2}format: int8\n/);
    expect(body).toMatch(/\n\+ {2}format: \w+/);
    expect(r.summary).toContain("### Suggested recipe");
    const searchDir = path.join(dir, "quantgate-out", "search");
    const patchPath = path.join(searchDir, "quantgate.yml.patch");
    expect(existsSync(patchPath), r.stdout).toBe(true);
    const patch = await readFile(patchPath, "utf8");
    expect(patch).toMatch(/^--- a\/quantgate\.yml\n\+\+\+ b\/quantgate\.yml\n@@ /);
    expect(patch).toContain("-  format: int8");
    // The patch's added lines are the ones the comment shows.
    for (const line of patch.split("\n").filter((l) => l.startsWith("+") && !l.startsWith("+++"))) expect(body).toContain(line);
    expect(existsSync(path.join(searchDir, "search.json"))).toBe(true);
    // Nothing is committed and the config is unchanged.
    expect(await readFile(configPath, "utf8")).toBe(before);
    expect(execFileSync("git", ["rev-list", "--all"], { cwd: dir, encoding: "utf8" }).trim()).toBe("");
  }, 120_000);
});
