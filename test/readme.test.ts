import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { parse } from "yaml";

const root = new URL("..", import.meta.url);

it("documents every action input and output in the README", () => {
  const action = parse(readFileSync(new URL("action.yml", root), "utf8")) as { inputs: Record<string, unknown>; outputs: Record<string, unknown> };
  const readme = readFileSync(new URL("README.md", root), "utf8");
  const missing = [...Object.keys(action.inputs), ...Object.keys(action.outputs)].filter((name) => !readme.includes(`\`${name}\``));
  expect(missing).toEqual([]);
});
