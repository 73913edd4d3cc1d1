// Issue 11.10/11.11 in the action: the same bad-input table run as the runner runs the action. Every case sets
// verdict=fail, writes a job summary, and its log names the file and the key or tensor, with no stack trace.
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { CASES, type Case } from "../helpers/bad-input-cases.js";
import { writeClassifierFixture } from "../helpers/models.js";
import { runActionAsync } from "./runner.js";

/** CLI flags of the table as the action's inputs. */
function inputsOf(c: Case): Record<string, string> {
  const inputs: Record<string, string> = { config: c.configFile ?? "quantgate.yml", cache: "false", artifact: "false", comment: "never" };
  const args = c.args ?? [];
  for (let i = 0; i + 1 < args.length; i += 2) inputs[args[i]!.replace(/^--/, "")] = args[i + 1]!;
  return inputs;
}

/** The workflow log as text: workflow commands escape newlines and percent signs. */
const unescapeLog = (log: string): string => log.replace(/%0D/g, "\r").replace(/%0A/g, "\n").replace(/%25/g, "%");

describe.concurrent(`bad inputs through the action: ${CASES.length} cases`, () => {
  for (const c of CASES) {
    it(c.what, async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), "qg-bad-action-"));
      const config = await writeClassifierFixture(dir, "  max_kl_mean: 0.5\n");
      if (c.config) await writeFile(config, c.config(await readFile(config, "utf8")));
      if (c.setup) await c.setup(dir);
      const run = await runActionAsync(dir, inputsOf(c), { eventName: "push", event: {} });
      const log = unescapeLog(run.stdout);
      expect(run.status, log).not.toBe(0);
      expect(run.outputs.verdict).toBe("fail");
      expect(run.summary).toMatch(/QuantGate: ❌ fail|❌ \*\*QuantGate failed\*\*/);
      // The language-modeling cases read the example's files from outside the fixture: the action, which
      // ignores allow_outside_workspace, refuses that first (itself a named, located error).
      const expected = c.configFile === "lm.yml" ? /lm\.yml:1 model: .* lies outside the workspace/ : c.expected;
      expect(log, log).toMatch(expected);
      expect(log).not.toMatch(/\n\s+at .+:\d+:\d+\)?\n/);
      expect(log).not.toMatch(/internal error/);
    });
  }
});
