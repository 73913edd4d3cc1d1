// Issue 11 item 17: the JSON Schema editors read (quantgate.schema.json) describes every key, so completion
// and hover explain each one. Walks the schema generated from the zod config schema and the committed file.
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { configSchema } from "../src/config/schema.js";
import { REPO_ROOT } from "./helpers/action.js";

type Node = { [key: string]: unknown };

/** Every property (at any depth: nested objects, array items, union branches, records, $defs) without a description. */
export function undescribed(schema: unknown): string[] {
  const missing: string[] = [];
  const walk = (n: unknown, at: string): void => {
    if (!n || typeof n !== "object") return;
    if (Array.isArray(n)) return n.forEach((x) => walk(x, at));
    const node = n as Node;
    for (const [key, value] of Object.entries((node.properties as Record<string, Node> | undefined) ?? {})) {
      const where = `${at}.${key}`;
      if (typeof value.description !== "string" || value.description.trim() === "") missing.push(where);
      walk(value, where);
    }
    for (const key of ["items", "prefixItems", "additionalProperties", "anyOf", "oneOf", "allOf", "not"]) {
      if (node[key]) walk(node[key], key === "items" || key === "prefixItems" ? `${at}[]` : key === "additionalProperties" ? `${at}.*` : at);
    }
    for (const key of ["$defs", "definitions"]) {
      for (const [name, value] of Object.entries((node[key] as Record<string, unknown> | undefined) ?? {})) walk(value, `#${name}`);
    }
  };
  walk(schema, "");
  return [...new Set(missing)];
}

describe("the config's JSON Schema", () => {
  it("has a description for every key (generated from the zod schema)", () => {
    const schema = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
    expect(Object.keys((schema as Node).properties as object).length).toBeGreaterThan(5);
    expect(undescribed(schema)).toEqual([]);
  });

  it("the committed quantgate.schema.json too (npm run schema regenerates it)", () => {
    const committed = JSON.parse(readFileSync(path.join(REPO_ROOT, "quantgate.schema.json"), "utf8"));
    expect(undescribed(committed)).toEqual([]);
  });

  it("the walk finds a property without a description at any depth", () => {
    const schema = z.toJSONSchema(
      z.strictObject({
        a: z.string().describe("A."),
        b: z.array(z.strictObject({ c: z.number() })).describe("B."),
        d: z.union([z.number(), z.strictObject({ e: z.number() })]),
      }),
    );
    expect(undescribed(schema)).toEqual(["[].c", ".d", ".d.e"].map((x) => (x.startsWith("[") ? `.b${x}` : x)));
  });
});
