#!/usr/bin/env node
// CLI entry: the compiled pipeline in lib/ (run `npm run build` first in a checkout).
import { main } from "../lib/cli.js";

process.exitCode = await main(process.argv.slice(2));
