// Writes the JSON report and the markdown summary into the output folder.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { GateRun } from "../pipeline.js";
import { renderMarkdown } from "./markdown.js";

export interface WrittenReport {
  readonly reportPath: string;
  readonly summaryPath: string;
  readonly markdown: string;
}

export async function writeReport(run: GateRun): Promise<WrittenReport> {
  const markdown = renderMarkdown(run.report);
  const summaryPath = path.join(run.outputDir, "quantgate-summary.md");
  await writeFile(run.reportPath, JSON.stringify(run.report, null, 2) + "\n");
  await writeFile(summaryPath, markdown);
  return { reportPath: run.reportPath, summaryPath, markdown };
}
