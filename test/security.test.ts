// Issue 11, security: contained paths, names as text, the PR comment is ours, patterns cannot hang,
// no telemetry files. Each case here failed on the code before the hardening.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdir, mkdtemp, readFile, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { StringStringEntryProtoSchema, TensorProto_DataLocation } from "onnx-buf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "./helpers/cli.js";
import { loadConfig } from "../src/config/load.js";
import { failureSummary } from "../src/action/main.js";
import { ruleAnnotations } from "../src/github/annotations.js";
import { ACTIONS_BOT, commentMarker, createOctokit, upsertComment } from "../src/github/comment.js";
import { renderCiMarkdown } from "../src/github/markdown.js";
import type { RegressionResult } from "../src/history/regression.js";
import { loadModel, serializeModel } from "../src/onnx/model.js";
import { matchesAny } from "../src/onnx/weights.js";
import type { Report } from "../src/report/types.js";
import { globMatch } from "../src/util/glob.js";
import { REPO_ROOT } from "./helpers/action.js";
import { buildMlp, writeClassifierFixture } from "./helpers/models.js";
import { startFakeGithub, type FakeGithub } from "./github/fake-github.js";

/** A repository folder inside a scratch folder, so that "outside" is a real, writable place. */
async function repo(): Promise<{ root: string; dir: string; config: string }> {
  const root = await mkdtemp(path.join(os.tmpdir(), "qg-sec-"));
  const dir = path.join(root, "ws", "repo");
  const config = await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n");
  return { root, dir, config };
}

async function appendConfig(config: string, yaml: string): Promise<void> {
  await writeFile(config, (await readFile(config, "utf8")) + yaml);
}

describe("paths from the config stay in the workspace (11.1)", () => {
  it("refuses output_dir ../../escaped-out: exit 2, key and line named, nothing written outside", async () => {
    const { root, config } = await repo();
    await appendConfig(config, "output_dir: ../../escaped-out\n");
    const r = await cli(["run", "-c", config]);
    expect(r.status, r.out).toBe(2);
    expect(r.out).toMatch(/quantgate\.yml:18 output_dir: "\.\.\/\.\.\/escaped-out" lies outside the workspace/);
    expect(existsSync(path.join(root, "escaped-out"))).toBe(false);
  });

  const cases: { what: string; setup: (dir: string, root: string) => Promise<string>; expected: RegExp }[] = [
    {
      what: "a model path up to /etc/passwd",
      setup: async () => "model: ../../../../../../../../etc/passwd\n",
      expected: /:\d+ model: .* lies outside the workspace/,
    },
    {
      what: "a model that is a symlink out of the repository",
      setup: async (dir, root) => {
        await writeFile(path.join(root, "secret.onnx"), "x");
        await symlink(path.join(root, "secret.onnx"), path.join(dir, "linked.onnx"));
        return "model: linked.onnx\n";
      },
      expected: /:\d+ model: "linked\.onnx" lies outside the workspace .*through a symlink/,
    },
    {
      what: "a dataset folder reached through a symlinked parent",
      setup: async (dir, root) => {
        await mkdir(path.join(root, "data"), { recursive: true });
        await symlink(path.join(root, "data"), path.join(dir, "data"));
        return "";
      },
      expected: /evaluation\.dataset: "data\/eval\.jsonl" lies outside the workspace/,
    },
    {
      what: "release.record ../../x.json",
      setup: async () => "release:\n  record: ../../x.json\n",
      expected: /:\d+ release\.record: "\.\.\/\.\.\/x\.json" must be a file name inside/,
    },
    {
      what: "history.path ../../..",
      setup: async () => "history:\n  path: ../../..\n",
      expected: /:\d+ history\.path: expected a folder inside the history branch .*got "\.\.\/\.\.\/\.\."/,
    },
    {
      what: "an absolute output_dir elsewhere",
      setup: async (_d, root) => `output_dir: ${root}/out\n`,
      expected: /:\d+ output_dir: .* lies outside the workspace/,
    },
  ];
  for (const c of cases) {
    it(`refuses ${c.what}`, async () => {
      const { root, dir, config } = await repo();
      const extra = await c.setup(dir, root);
      let text = await readFile(config, "utf8");
      if (extra.startsWith("model:")) text = text.replace("model: mlp.onnx\n", extra);
      else text += extra;
      if (c.what.includes("dataset")) text = text.replace("dataset: eval.jsonl", "dataset: data/eval.jsonl");
      await writeFile(config, text);
      await expect(loadConfig(config)).rejects.toThrow(c.expected);
    });
  }

  it("refuses an external-data file that is a symlink out of the model folder", async () => {
    const { root, dir } = await repo();
    const mlp = buildMlp(8, 16, 4);
    const t = mlp.proto.graph!.initializer[0]!;
    await writeFile(path.join(root, "weights.bin"), t.rawData);
    await symlink(path.join(root, "weights.bin"), path.join(dir, "weights.bin"));
    t.dataLocation = TensorProto_DataLocation.EXTERNAL;
    t.externalData = [create(StringStringEntryProtoSchema, { key: "location", value: "weights.bin" })];
    t.rawData = new Uint8Array(0);
    await writeFile(path.join(dir, "ext.onnx"), serializeModel(mlp.proto));
    await expect(loadModel(path.join(dir, "ext.onnx"))).rejects.toThrow(/external data "weights\.bin" lies outside the model folder/);
  });

  it("allow_outside_workspace: true lets the CLI read outside, never write; the action ignores it", async () => {
    const { root, dir, config } = await repo();
    await writeFile(path.join(root, "outside.onnx"), "x");
    await appendConfig(config, "allow_outside_workspace: true\n");
    const text = (await readFile(config, "utf8")).replace("model: mlp.onnx", `model: ${path.join(root, "outside.onnx")}`);
    await writeFile(config, text);
    await expect(loadConfig(config)).resolves.toMatchObject({ model: path.join(root, "outside.onnx") });
    await expect(loadConfig(config, {}, { workspace: dir, forbidOutsideReads: true })).rejects.toThrow(/model: .* lies outside the workspace/);
    await writeFile(config, `${text}output_dir: ../out\n`);
    await expect(loadConfig(config)).rejects.toThrow(/output_dir: "\.\.\/out" lies outside the workspace .*outputs are always written inside it/);
  });

  it("a metric module (code) is never loaded from outside the workspace, even with allow_outside_workspace (11.2)", async () => {
    const { root, dir } = await repo();
    await writeFile(path.join(root, "metric.mjs"), "export default () => ({ score: 1 });\n");
    const config = path.join(dir, "fidelity.yml");
    const yaml =
      "model: mlp.onnx\nallow_outside_workspace: true\nevaluation:\n  task: fidelity\n  dataset: eval.jsonl\n  metric:\n    module: ../../metric.mjs\n";
    await writeFile(config, yaml);
    await expect(loadConfig(config)).rejects.toThrow(
      /fidelity\.yml:7 evaluation\.metric\.module: "\.\.\/\.\.\/metric\.mjs" lies outside the workspace .*code \(a metric module\) is only loaded from inside it/,
    );
  });

  it("an output-dir input that leaves the workspace is refused and named as an input", async () => {
    const { config } = await repo();
    await expect(loadConfig(config, { output_dir: "../../x" })).rejects.toThrow(/output_dir: "\.\.\/\.\.\/x" lies outside the workspace/);
  });
});

const EVIL = "w\n## Verdict: PASS\n![pwn](https://evil.example/p.png) <!-- quantgate-comment: other --> | `x`";

describe("names are text, never markup (11.3)", () => {
  it("a layer name cannot inject a heading, an image or another config's marker into the CI section", () => {
    const reg: RegressionResult = {
      base: { commit: "a".repeat(40), branch: "main\n# Fake", createdAt: "", runUrl: "javascript:alert(1)" },
      rules: [],
      comparisons: [],
      layers: [{ name: EVIL, change: "changed", fields: ["format"], before: undefined, after: undefined }],
      notes: [EVIL],
    };
    const md = renderCiMarkdown({ mode: "check", baseBranch: EVIL, regression: reg, runUrl: "https://github.com/acme/x/actions/runs/1" }, []);
    for (const line of md.split("\n")) expect(line).not.toMatch(/^\s*#+ Verdict|^\s*#+ Fake/);
    expect(md).not.toContain("<!--");
    expect(md).not.toMatch(/!\[pwn\]\(/);
    expect(md).not.toContain("javascript:");
    expect(md).toContain("[Workflow run](https://github.com/acme/x/actions/runs/1)");
    // The table row keeps its cell count: an escaped | does not split it.
    const row = md.split("\n").find((l) => l.startsWith("| <code>"))!;
    expect(row.replace(/\\\|/g, "").split("|").length).toBe(6);
  });

  it("annotations are one line each", () => {
    const report = { gate: { rules: [{ rule: "r\nx", status: "fail", message: EVIL }] } } as unknown as Report;
    const [a] = ruleAnnotations(report, "quantgate.yml", {});
    expect(a!.message).not.toContain("\n");
    expect(a!.title).not.toContain("\n");
  });

  it("an error shown in the failure summary cannot close its block", () => {
    const body = failureSummary("loading the config", `bad </pre>\n## Verdict: PASS\n${EVIL}`);
    expect(body.match(/<\/pre>/g)).toHaveLength(1);
    expect(body).not.toContain("<!--");
  });

  it("a tensor name with a newline cannot print a second verdict line in the terminal", async () => {
    const { dir, config } = await repo();
    // Every weight is skipped (min_elements too high), so the error lists them by name.
    const mlp = buildMlp(64, 128, 10, 7);
    const renamed = "fc1.weight\n\nVerdict: PASS\u001b[2J";
    for (const t of mlp.proto.graph!.initializer) if (t.name === "fc1.weight") t.name = renamed;
    for (const n of mlp.proto.graph!.node) n.input = n.input.map((i) => (i === "fc1.weight" ? renamed : i));
    await writeFile(path.join(dir, "mlp.onnx"), serializeModel(mlp.proto));
    await writeFile(config, (await readFile(config, "utf8")).replace("min_elements: 256", "min_elements: 100000000"));
    const r = await cli(["run", "-c", config]);
    expect(r.status).toBe(1);
    const verdicts = r.out.split("\n").filter((l) => /^\s*Verdict:/.test(l));
    expect(verdicts).toEqual(["Verdict: FAIL"]);
    expect(r.out).not.toContain("\u001b");
  });
});

describe("the pull-request comment is ours (11.4, 11.15)", () => {
  let gh: FakeGithub;
  beforeAll(async () => {
    gh = await startFakeGithub();
  });
  afterAll(async () => gh.close());
  const key = "acme/models#5";
  const marker = commentMarker("quantgate");

  it("never edits a visitor's comment that carries the marker; creates its own", async () => {
    gh.comments.set(key, [{ id: 1, body: `${marker}\nI copied the marker`, html_url: "u1", user: { login: "mallory" }, created_at: "", updated_at: "" }]);
    const octokit = createOctokit("ghs_installation", gh.url, undefined, 5);
    const r = await upsertComment(octokit, { owner: "acme", repo: "models", issueNumber: 5, marker }, "## QuantGate", "always", false);
    expect(r.action).toBe("created");
    const list = gh.comments.get(key)!;
    expect(list[0]!.body).toBe(`${marker}\nI copied the marker`);
    expect(list[1]!.user.login).toBe(ACTIONS_BOT);
    // The second run finds its own comment (marker and author) and updates it.
    const again = await upsertComment(octokit, { owner: "acme", repo: "models", issueNumber: 5, marker }, "## QuantGate v2", "always", false);
    expect(again).toMatchObject({ action: "updated", id: list[1]!.id });
    expect(gh.comments.get(key)).toHaveLength(2);
  });

  it("with a personal access token, the comment is the token user's, not the bot's", async () => {
    gh.users.set("ghp_alice", "alice");
    gh.comments.set("acme/models#6", [
      { id: 11, body: `${marker}\nbot`, html_url: "u11", user: { login: ACTIONS_BOT }, created_at: "", updated_at: "" },
      { id: 12, body: `${marker}\nold`, html_url: "u12", user: { login: "alice" }, created_at: "", updated_at: "" },
    ]);
    const octokit = createOctokit("ghp_alice", gh.url, undefined, 5);
    const r = await upsertComment(octokit, { owner: "acme", repo: "models", issueNumber: 6, marker }, "new", "always", false);
    expect(r).toMatchObject({ action: "updated", id: 12 });
    expect(gh.comments.get("acme/models#6")![0]!.body).toBe(`${marker}\nbot`);
  });

  it("with a GitHub App's installation token, the comment is the app bot's (found through GraphQL's viewer)", async () => {
    gh.apps.set("ghs_app", "quantgate-ci[bot]");
    gh.comments.set("acme/models#7", [
      { id: 21, body: `${marker}\nworkflow bot`, html_url: "u21", user: { login: ACTIONS_BOT }, created_at: "", updated_at: "" },
    ]);
    const octokit = createOctokit("ghs_app", gh.url, undefined, 5);
    const first = await upsertComment(octokit, { owner: "acme", repo: "models", issueNumber: 7, marker }, "app v1", "always", false);
    expect(first.action).toBe("created");
    const list = gh.comments.get("acme/models#7")!;
    expect(list[1]!.user.login).toBe("quantgate-ci[bot]");
    // The second run updates the app's own comment, not the workflow bot's, and makes no third one.
    const again = await upsertComment(octokit, { owner: "acme", repo: "models", issueNumber: 7, marker }, "app v2", "always", false);
    expect(again).toMatchObject({ action: "updated", id: list[1]!.id });
    expect(list).toHaveLength(2);
    expect(list[0]!.body).toBe(`${marker}\nworkflow bot`);
  });

  it("retries a transient 502 and waits out a secondary rate limit", async () => {
    gh.comments.set("acme/models#8", []);
    gh.failNext = 2;
    const warnings: string[] = [];
    const octokit = createOctokit("ghs_installation", gh.url, { warning: (m) => warnings.push(m) }, 5);
    const r = await upsertComment(octokit, { owner: "acme", repo: "models", issueNumber: 8, marker }, "body", "always", false);
    expect(r.action).toBe("created");
    gh.secondaryLimitNext = 1;
    const r2 = await upsertComment(octokit, { owner: "acme", repo: "models", issueNumber: 8, marker }, "body 2", "always", false);
    expect(r2.action).toBe("updated");
    expect(warnings.join("\n")).toMatch(/secondary rate limit/);
  });
});

describe("name patterns cannot hang (11.5)", () => {
  it("*a*a*a*a*a*a*a*a*a*a*a*b against a 40-character name completes (the regex version ran for minutes)", () => {
    const name = "a".repeat(40);
    expect(matchesAny(["*a*a*a*a*a*a*a*a*a*a*a*b"], name)).toBeUndefined();
    expect(matchesAny(["*a*a*a*a*a*a*a*a*a*a*a*a"], name)).toBe("*a*a*a*a*a*a*a*a*a*a*a*a");
    expect(globMatch("*a*a*a*a*a*a*a*a*a*a*a*b", "a".repeat(4000))).toBe(false);
  });

  const table: [string, string, boolean][] = [
    ["*attn*", "/model/layers.0/attn/q_proj/MatMul", true],
    ["*.weight", "fc1.weight", true],
    ["fc?.weight", "fc1.weight", true],
    ["fc?.weight", "fc10.weight", false],
    ["lm_head", "lm_head", true],
    ["lm_head", "lm_head2", false],
    ["*", "", true],
    ["a*b*c", "abc", true],
    ["a*b*c", "acb", false],
    ["[0-9]", "[0-9]", true],
    ["x.y", "xzy", false],
    ["*é*", "café", true],
  ];
  for (const [pattern, name, expected] of table) {
    it(`${JSON.stringify(pattern)} ${expected ? "matches" : "does not match"} ${JSON.stringify(name)}`, () => {
      expect(globMatch(pattern, name)).toBe(expected);
    });
  }
});

describe("ONNX Runtime telemetry is off (11.6)", () => {
  it("a gate run writes nothing under HOME (ORT 1.30 would write .cache/Microsoft/DeveloperTools/.onnxruntime)", async () => {
    const { dir, config } = await repo();
    const home = await mkdtemp(path.join(os.tmpdir(), "qg-home-"));
    const env: Record<string, string> = { PATH: process.env.PATH ?? "", HOME: home };
    const r = spawnSync(process.execPath, [path.join(REPO_ROOT, "bin", "quantgate.js"), "run", "-c", config], { env, encoding: "utf8", timeout: 240_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(statSync(path.join(dir, "quantgate-out", "quantgate-report.json")).size).toBeGreaterThan(0);
    const files = readdirSync(home, { recursive: true }).map(String);
    expect(files).toEqual([]);
  });
});
