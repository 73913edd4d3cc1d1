import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { z } from "zod";
import { configSchema } from "../src/config/schema.js";

it("keeps the committed quantgate.schema.json in step with the zod schema (run `npm run schema`)", () => {
  const generated = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  generated.title = "QuantGate configuration (quantgate.yml)";
  const committed = JSON.parse(readFileSync(new URL("../quantgate.schema.json", import.meta.url), "utf8"));
  expect(committed).toEqual(JSON.parse(JSON.stringify(generated)));
});
