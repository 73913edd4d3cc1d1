// Runs before every other module of the action: @actions/github (pulled in by @actions/artifact) parses
// GITHUB_EVENT_PATH when it is imported, so a malformed event file would crash the action before it could
// say anything. Here the file is checked first; a bad one is recorded and hidden from that import, and
// run() reports it (verdict fail, job summary).
import { readFileSync } from "node:fs";

const file = process.env.GITHUB_EVENT_PATH;
if (file) {
  try {
    const payload: unknown = JSON.parse(readFileSync(file, "utf8"));
    if (!payload || typeof payload !== "object" || Array.isArray(payload)) throw new Error("it does not hold a JSON object");
  } catch (err) {
    process.env.QUANTGATE_EVENT_ERROR = `the event file ${file} cannot be used (${(err as Error).message.split("\n")[0]})`;
    delete process.env.GITHUB_EVENT_PATH;
  }
}
