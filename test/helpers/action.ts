// Runs the action the way the GitHub runner does (node <entry> with INPUT_* and GITHUB_* set): by default the
// compiled source (lib/index.js, which `npm test` builds first), with QUANTGATE_ACTION_ENTRY=dist the bundle.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");

/**
 * The Node binary that runs dist/index.js: action.yml declares node24, so CI points QUANTGATE_ACTION_NODE at a
 * Node 24 when the machine's own is older (.ci/run); locally, the Node running the tests.
 */
export const ACTION_NODE = process.env.QUANTGATE_ACTION_NODE || process.execPath;

/**
 * What the runner-style tests run. `npm test` compiles src/ to lib/ and runs lib/index.js, so a change under
 * src/action is tested before any rebundle; CI (.ci/run) rebundles and runs them again on dist/index.js.
 */
export const ACTION_ENTRY_KIND: "lib" | "dist" = process.env.QUANTGATE_ACTION_ENTRY === "dist" ? "dist" : "lib";
export const ACTION_ENTRY = path.join(REPO_ROOT, ACTION_ENTRY_KIND, "index.js");

export interface ActionRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly outputs: Record<string, string>;
  readonly summary: string;
}

/** Parses the GITHUB_OUTPUT file (name<<delimiter ... delimiter). */
export function parseOutputs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<]+)<<(.+)$/.exec(lines[i]!);
    if (!m) continue;
    const value: string[] = [];
    for (i++; i < lines.length && lines[i] !== m[2]; i++) value.push(lines[i]!);
    out[m[1]!] = value.join("\n");
  }
  return out;
}

export interface RunnerFiles {
  readonly env: Record<string, string>;
  readonly outputFile: string;
  readonly summaryFile: string;
}

/** The files and environment the runner gives an action step: GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, the event, INPUT_*. */
export function runnerEnvironment(cwd: string, inputs: Record<string, string>, event: unknown, extra: Record<string, string> = {}): RunnerFiles {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "qg-runner-"));
  const outputFile = path.join(tmp, "output");
  const summaryFile = path.join(tmp, "summary");
  const eventFile = path.join(tmp, "event.json");
  writeFileSync(outputFile, "");
  writeFileSync(summaryFile, "");
  writeFileSync(eventFile, JSON.stringify(event));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? tmp,
    GITHUB_OUTPUT: outputFile,
    GITHUB_STEP_SUMMARY: summaryFile,
    GITHUB_EVENT_PATH: eventFile,
    GITHUB_EVENT_NAME: "push",
    GITHUB_WORKSPACE: cwd,
    RUNNER_TEMP: tmp,
    RUNNER_TOOL_CACHE: path.join(tmp, "toolcache"),
    // The runner passes every input, empty when not set.
    "INPUT_ONNXRUNTIME-PATH": REPO_ROOT,
    ...extra,
  };
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
  return { env, outputFile, summaryFile };
}

export function runAction(cwd: string, inputs: Record<string, string>, event: unknown = {}): ActionRun {
  const { env, outputFile, summaryFile } = runnerEnvironment(cwd, inputs, event);
  const r = spawnSync(ACTION_NODE, [ACTION_ENTRY], { cwd, env, encoding: "utf8", timeout: 300_000 });
  return {
    status: r.status,
    stdout: r.stdout + r.stderr,
    outputs: parseOutputs(readFileSync(outputFile, "utf8")),
    summary: readFileSync(summaryFile, "utf8"),
  };
}
