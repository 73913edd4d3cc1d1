// The action in pull-request checks, as the runner runs it, against a local fake of the GitHub REST API
// and a local bare repository as the history remote.
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeClassifierFixture } from "../helpers/models.js";
import { startFakeGithub, seedComments, type FakeGithub } from "./fake-github.js";
import { pullRequestEvent, pushEvent, runActionAsync } from "./runner.js";

let gh: FakeGithub;
beforeAll(async () => {
  gh = await startFakeGithub();
});
afterAll(async () => {
  await gh.close();
});

const lineOf = (text: string, needle: string): number => text.split("\n").findIndex((l) => l.includes(needle)) + 1;
const marker = "<!-- quantgate-comment: quantgate -->";

function prEnv(number: number): Record<string, string> {
  return { GITHUB_API_URL: gh.url, GITHUB_REF: `refs/pull/${number}/merge`, GITHUB_BASE_REF: "main", GITHUB_HEAD_REF: "feature", GITHUB_SHA: "d".repeat(40) };
}

async function bareRemote(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "qg-remote-"));
  execFileSync("git", ["init", "-q", "--bare", dir]);
  return dir;
}

describe("pull-request checks (runner-style, local GitHub API)", () => {
  it("creates one comment on the first run and updates it on the second, never duplicating; annotations written", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-pr-"));
    const configPath = await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n  max_model_size: {warn: 1KiB, fail: 1MiB}\n");
    seedComments(gh, "acme/models#7", 120); // the marker has to be found past the first page
    const inputs = { config: "quantgate.yml", "github-token": "ghs_fake_token", cache: "false" };

    const first = await runActionAsync(dir, inputs, { eventName: "pull_request", event: pullRequestEvent(7), env: prEnv(7) });
    expect(first.status, first.stdout).toBe(0);
    const posts = () => gh.requests.filter((r) => r.method === "POST" && r.path === "/repos/acme/models/issues/7/comments");
    const patches = () => gh.requests.filter((r) => r.method === "PATCH");
    expect(posts()).toHaveLength(1);
    expect(posts()[0]!.authorization).toBe("token ghs_fake_token");
    const ours = () => gh.comments.get("acme/models#7")!.filter((c) => c.body.includes(marker));
    expect(ours()).toHaveLength(1);
    const body = ours()[0]!.body;
    expect(body.startsWith(marker)).toBe(true);
    expect(body).toContain("## ✅ **QuantGate passed**");
    expect(body).toContain("| Metric | Float | Quantized | Delta | Limit | Status |");
    expect(body).toMatch(/⚠️ Model size \*\*.* is past the warning level of <code>max\\_model\\_size<\/code>/);
    expect(body).toMatch(/\[Workflow run\]\(https:\/\/github\.com\/acme\/models\/actions\/runs\/\d+\)/);
    expect(body).toContain("Base-branch comparison skipped"); // no history configured
    // the comment and the job summary are one body
    expect(first.summary.trim()).toBe(body.slice(marker.length + 1).trim());
    expect(first.outputs["comment-url"]).toMatch(/pull\/7#issuecomment-\d+$/);
    // annotation at the rule's line in quantgate.yml
    const text = await readFile(configPath, "utf8");
    expect(first.stdout).toContain(`::warning title=QuantGate max_model_size,file=quantgate.yml,line=${lineOf(text, "max_model_size")}::Model size`);
    // the artifact upload was attempted and, with no artifact service here, only warned
    expect(first.stdout).toMatch(/::warning::uploading artifact "quantgate-quantgate" failed/);

    const listedBefore = gh.requests.filter((r) => r.method === "GET").length;
    const second = await runActionAsync(dir, inputs, { eventName: "pull_request", event: pullRequestEvent(7), env: prEnv(7) });
    expect(second.status, second.stdout).toBe(0);
    expect(posts()).toHaveLength(1); // not duplicated
    expect(patches()).toHaveLength(1);
    expect(patches()[0]!.path).toBe(`/repos/acme/models/issues/comments/${ours()[0]!.id}`);
    expect(ours()).toHaveLength(1);
    expect(gh.requests.filter((r) => r.method === "GET").length - listedBefore).toBeGreaterThanOrEqual(2); // paged through 121 comments
    expect(second.stdout).toMatch(/pull-request comment updated/);
  });

  it("warns and still gates by its rules when the token cannot write (fork pull request)", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-fork-"));
    await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n");
    gh.readOnly = true;
    try {
      const run = await runActionAsync(
        dir,
        { config: "quantgate.yml", "github-token": "ghs_read_only", artifact: "false", cache: "false" },
        {
          eventName: "pull_request",
          event: pullRequestEvent(9, "main", "patch-1", true),
          env: prEnv(9),
        },
      );
      expect(run.status, run.stdout).toBe(0);
      expect(run.outputs.verdict).toBe("pass");
      expect(run.stdout).toMatch(/::warning::cannot comment on #9 \(HTTP 403: Resource not accessible by integration/);
      expect(run.stdout).not.toMatch(/uploading artifact/); // artifact: false
    } finally {
      gh.readOnly = false;
    }
  });

  it("comment: on-failure creates nothing for a passing run", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-onfail-"));
    await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n");
    const run = await runActionAsync(
      dir,
      { config: "quantgate.yml", "github-token": "t", comment: "on-failure", artifact: "false", cache: "false" },
      {
        eventName: "pull_request",
        event: pullRequestEvent(11),
        env: prEnv(11),
      },
    );
    expect(run.status, run.stdout).toBe(0);
    expect(gh.requests.filter((r) => r.path.includes("/issues/11/") && r.method === "POST")).toHaveLength(0);
  });

  it("a push to the default branch appends history; a following pull request reports the regression against it", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-hist-"));
    const remote = await bareRemote();
    const configPath = await writeClassifierFixture(
      dir,
      "  max_kl_mean: 0.5\nregression:\n  max_size_increase_pct: 5%\n  max_accuracy_drop: 10\n  max_latency_increase_pct: 50%\nhistory:\n  branch: quantgate-data\n",
    );
    const common = { config: "quantgate.yml", "github-token": "t", "history-remote": remote, artifact: "false", cache: "false" };
    const base = "a".repeat(40);
    const push = await runActionAsync(dir, common, {
      eventName: "push",
      event: pushEvent(base),
      env: { GITHUB_API_URL: gh.url, GITHUB_REF: "refs/heads/main", GITHUB_SHA: base },
    });
    expect(push.status, push.stdout).toBe(0);
    expect(push.outputs["history-location"]).toBe("quantgate-data:quantgate/quantgate.json");
    const stored = JSON.parse(execFileSync("git", ["--git-dir", remote, "show", "quantgate-data:quantgate/quantgate.json"], { encoding: "utf8" }));
    expect(stored.entries).toHaveLength(1);
    expect(stored.entries[0]).toMatchObject({ commit: base, branch: "main", verdict: "pass", recipe: { format: "int4" } });
    expect(execFileSync("git", ["--git-dir", remote, "show", "quantgate-data:quantgate/index.html"], { encoding: "utf8" })).toContain("uPlot");
    expect(push.outputs["dashboard-path"]).toMatch(/dashboard\.html$/);

    // The pull request switches the recipe to int8: the model grows well past 5%.
    const pr = await runActionAsync(dir, { ...common, format: "int8" }, { eventName: "pull_request", event: pullRequestEvent(12), env: prEnv(12) });
    expect(pr.status).not.toBe(0);
    expect(pr.outputs.verdict).toBe("fail");
    expect(pr.outputs["base-commit"]).toBe(base);
    expect(pr.summary).toMatch(/### Against the base branch <code>main<\/code> \(\[aaaaaaa\]\(https:\/\/github\.com\/acme\/models\/actions\/runs\/\d+\)\)/);
    expect(pr.summary).toMatch(/\| Model size \| .* \| \+\d+\.\d+% \| ≤ 5\.00% \(<code>regression\.max\\_size\\_increase\\_pct<\/code>\) \| ❌ fail \|/);
    expect(pr.summary).toMatch(/\| Accuracy \|.*CI \[/); // the accuracy delta carries an interval
    expect(pr.summary).toContain("<summary>Per-layer precision changes against aaaaaaa");
    expect(pr.summary).toMatch(/\| <code>fc1\.weight<\/code> \| changed: format, bits.* \| int4 b32 .* \| int8 b32 /);
    const text = await readFile(configPath, "utf8");
    expect(pr.stdout).toContain(
      `::error title=QuantGate regression.max_size_increase_pct,file=quantgate.yml,line=${lineOf(text, "max_size_increase_pct")}::Model size increase vs base`,
    );
    const comment = gh.comments.get("acme/models#12")?.find((c) => c.body.includes(marker));
    expect(comment?.body.replace(/\\/g, "")).toContain("regression.max_size_increase_pct"); // escaped markdown: backslashes dropped
    // pull requests never write history
    const after = JSON.parse(execFileSync("git", ["--git-dir", remote, "show", "quantgate-data:quantgate/quantgate.json"], { encoding: "utf8" }));
    expect(after.entries).toHaveLength(1);
  });

  it("mode: release applies the release block's stricter limits and writes the pass/fail record", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-release-"));
    const configPath = await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n  max_bits_per_weight: 6\nrelease:\n  gate:\n    max_bits_per_weight: 4.5\n");
    const inputs = { config: "quantgate.yml", artifact: "false", cache: "false" };
    const env = { GITHUB_REF: "refs/tags/v1.0.0", GITHUB_SHA: "e".repeat(40) };
    const check = await runActionAsync(dir, inputs, { eventName: "push", event: {}, env });
    expect(check.status, check.stdout).toBe(0);
    expect(check.outputs["release-record-path"]).toBeUndefined();

    const release = await runActionAsync(dir, { ...inputs, mode: "release" }, { eventName: "push", event: {}, env });
    expect(release.status).not.toBe(0);
    expect(release.summary).toContain("**Release mode**");
    const record = JSON.parse(await readFile(release.outputs["release-record-path"]!, "utf8"));
    expect(record).toMatchObject({ schema: "quantgate.release/v1", verdict: "fail", commit: "e".repeat(40) });
    expect(record.rules.find((r: { rule: string }) => r.rule === "max_bits_per_weight")).toMatchObject({ status: "fail", fail: 4.5 });
    const text = await readFile(configPath, "utf8");
    expect(release.stdout).toContain(`::error title=QuantGate max_bits_per_weight,file=quantgate.yml,line=${lineOf(text, "max_bits_per_weight: 4.5")}::`);
  });

  it("rejects a bad CI input, naming it", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-badinput-"));
    await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n");
    const run = await runActionAsync(dir, { config: "quantgate.yml", comment: "sometimes" }, { eventName: "push", event: {} });
    expect(run.status).not.toBe(0);
    expect(run.stdout).toContain('input "comment": expected "always", "on-failure", "never", got "sometimes"');
  });
});
