// Issue 11, items 1, 2, 7 and 9 as the runner runs the action (node dist/index.js): every failure sets
// verdict=fail and writes a job summary that says what failed; no stale report; privileged events refuse
// config-defined code; paths from inputs stay in the workspace.
import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ACTION_ENTRY, ACTION_ENTRY_KIND, ACTION_NODE, parseOutputs, REPO_ROOT, runnerEnvironment, type ActionRun } from "../helpers/action.js";
import { writeClassifierFixture } from "../helpers/models.js";

function run(cwd: string, inputs: Record<string, string>, opts: { env?: Record<string, string>; event?: unknown; entry?: string } = {}): ActionRun {
  const files = runnerEnvironment(cwd, inputs, opts.event ?? {}, opts.env);
  const r = spawnSync(ACTION_NODE, [opts.entry ?? ACTION_ENTRY], { cwd, env: files.env, encoding: "utf8", timeout: 300_000 });
  const read = (f: string): string => (existsSync(f) ? readFileSync(f, "utf8") : "");
  return {
    status: r.status,
    stdout: r.stdout + r.stderr,
    outputs: parseOutputs(read(files.outputFile)),
    summary: read(files.env.GITHUB_STEP_SUMMARY ?? files.summaryFile),
  };
}

async function fixture(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n");
  return dir;
}

describe("the action explains every failure (11.9)", () => {
  it("a malformed GITHUB_EVENT_PATH: verdict fail and a job summary naming the event file", async () => {
    const dir = await fixture("qg-event-");
    const bad = path.join(dir, "event.json");
    writeFileSync(bad, "{ not json");
    const r = run(dir, { config: "quantgate.yml" }, { env: { GITHUB_EVENT_PATH: bad, GITHUB_EVENT_NAME: "pull_request" } });
    expect(r.status).not.toBe(0);
    expect(r.outputs.verdict).toBe("fail");
    expect(r.summary).toContain("QuantGate: ❌ fail");
    expect(r.summary).toMatch(/failed while reading the GitHub event/);
    expect(r.summary).toMatch(/GITHUB_EVENT_PATH: the event file .*event\.json cannot be used/);
    expect(r.stdout).not.toMatch(/\n\s+at .*\.js:\d+/); // no stack trace
  });

  // The bundle alone, away from node_modules, is what installs ONNX Runtime: this case needs dist/ (CI runs it after rebundling).
  it.skipIf(ACTION_ENTRY_KIND !== "dist")(
    "a failed ONNX Runtime install: the friendly message reaches the summary (runs on dist/: QUANTGATE_ACTION_ENTRY=dist)",
    async () => {
      const dir = await fixture("qg-ortfail-");
      // The action away from this repository's node_modules, and an npm that fails like an offline runner's.
      const action = await mkdtemp(path.join(os.tmpdir(), "qg-dist-"));
      cpSync(path.join(REPO_ROOT, "dist"), path.join(action, "dist"), { recursive: true });
      const bin = path.join(action, "bin");
      mkdirSync(bin);
      writeFileSync(path.join(bin, "npm"), "#!/bin/sh\necho 'npm ERR! network request failed' >&2\nexit 1\n");
      chmodSync(path.join(bin, "npm"), 0o755);
      const r = run(
        dir,
        { config: "quantgate.yml", "onnxruntime-path": "", cache: "false" },
        {
          entry: path.join(action, "dist", "index.js"),
          env: { PATH: `${bin}:${process.env.PATH}` },
        },
      );
      expect(r.outputs.verdict).toBe("fail");
      expect(r.summary).toMatch(/failed while loading ONNX Runtime/);
      expect(r.summary).toMatch(/ONNX Runtime could not be installed: .*npm install onnxruntime-node@1\.30\.0.* exited with code 1/);
      expect(r.summary).toMatch(/onnxruntime-path/);
    },
  );

  it("a job-summary file that cannot be written fails the run and says so in the log", async () => {
    const dir = await fixture("qg-nosummary-");
    const r = run(dir, { config: "quantgate.yml" }, { env: { GITHUB_STEP_SUMMARY: path.join(dir, "missing-dir", "summary.md") } });
    expect(r.status).not.toBe(0);
    expect(r.outputs.verdict).toBe("fail");
    expect(r.stdout).toMatch(/::error::cannot write the job summary .*missing-dir.*summary\.md: no such file or folder \(ENOENT\)/);
  });

  it("a summary file that is missing (folder present) is created; the gate still decides", async () => {
    const dir = await fixture("qg-newsummary-");
    const file = path.join(dir, "new-summary.md");
    const r = run(dir, { config: "quantgate.yml" }, { env: { GITHUB_STEP_SUMMARY: file } });
    expect(r.outputs.verdict, r.stdout).toBe("pass");
    expect(readFileSync(file, "utf8")).toContain("✅ **QuantGate passed**");
  });
});

describe("no stale outputs in the action (11.7)", () => {
  it("a config error removes the previous run's pass report, summary and model", async () => {
    const dir = await fixture("qg-stale-");
    const out = path.join(dir, "quantgate-out");
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, "quantgate-report.json"), JSON.stringify({ verdict: "pass" }));
    writeFileSync(path.join(out, "quantgate-summary.md"), "## QuantGate: ✅ pass");
    writeFileSync(path.join(out, "mlp.quantized.onnx"), "old");
    writeFileSync(path.join(dir, "quantgate.yml"), readFileSync(path.join(dir, "quantgate.yml"), "utf8") + "  max_colour: blue\n");
    const r = run(dir, { config: "quantgate.yml" });
    expect(r.outputs.verdict).toBe("fail");
    expect(r.summary).toMatch(/gate: unknown key &quot;max_colour&quot;/);
    for (const f of ["quantgate-report.json", "quantgate-summary.md", "mlp.quantized.onnx"]) expect(existsSync(path.join(out, f)), f).toBe(false);
  });
});

describe("inputs and events (11.1, 11.2)", () => {
  it("an output-dir input outside GITHUB_WORKSPACE is refused and nothing is written there", async () => {
    const dir = await fixture("qg-outdir-");
    const outside = path.join(os.tmpdir(), `qg-escaped-${path.basename(dir)}`);
    const r = run(dir, { config: "quantgate.yml", "output-dir": outside });
    expect(r.outputs.verdict).toBe("fail");
    expect(r.summary).toMatch(/output_dir: .* lies outside the workspace/);
    expect(existsSync(outside)).toBe(false);
  });

  const fidelityWithMetric = (dir: string): void => {
    writeFileSync(path.join(dir, "metric.mjs"), "export default () => ({ score: 1 });\n");
    writeFileSync(
      path.join(dir, "quantgate.yml"),
      "model: mlp.onnx\nevaluation:\n  task: fidelity\n  dataset: eval.jsonl\n  metric:\n    module: metric.mjs\n    limits:\n      score: { min: 0.5 }\n",
    );
  };

  it("on pull_request_target, a config-defined metric module is refused unless allow-pr-code is set", async () => {
    const dir = await fixture("qg-prt-");
    fidelityWithMetric(dir);
    const event = { pull_request: { number: 3, base: { ref: "main" }, head: { ref: "x" } }, repository: { full_name: "acme/models" } };
    const r = run(dir, { config: "quantgate.yml" }, { env: { GITHUB_EVENT_NAME: "pull_request_target" }, event });
    expect(r.outputs.verdict).toBe("fail");
    expect(r.stdout).toMatch(/::warning::QuantGate runs on pull_request_target/);
    expect(r.summary).toMatch(
      /quantgate\.yml:6 evaluation\.metric\.module: refusing to run &quot;metric\.mjs&quot; on a pull\\_request\\_target event|refusing to run &quot;metric\.mjs&quot; on a pull_request_target event/,
    );
    const wr = run(dir, { config: "quantgate.yml" }, { env: { GITHUB_EVENT_NAME: "workflow_run" }, event: {} });
    expect(wr.summary).toMatch(/refusing to run &quot;metric\.mjs&quot; on a workflow_run event/);
    const allowed = run(dir, { config: "quantgate.yml", "allow-pr-code": "true", comment: "never" }, { env: { GITHUB_EVENT_NAME: "workflow_run" }, event: {} });
    expect(allowed.summary).not.toMatch(/refusing to run/);
  });
});
