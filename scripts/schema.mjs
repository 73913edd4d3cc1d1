// Writes quantgate.schema.json (for editor completion of quantgate.yml) from the zod schema.
import { writeFileSync } from "node:fs";
import { z } from "zod";
import { configSchema } from "../lib/config/schema.js";

const schema = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
schema.title = "QuantGate configuration (quantgate.yml)";
writeFileSync(new URL("../quantgate.schema.json", import.meta.url), JSON.stringify(schema, null, 2) + "\n");
