// Writes the JSON report and the markdown summary into the output folder: each atomically, the report last
// (a report on disk means the run finished).
import path from "node:path";
import type { GateRun } from "../pipeline.js";
import { writeFileAtomic } from "../util/atomic.js";
import { renderMarkdown } from "./markdown.js";

export interface WrittenReport {
  readonly reportPath: string;
  readonly summaryPath: string;
  readonly markdown: string;
}

/** `markdown` replaces the summary body (the action adds its CI sections). */
export async function writeReport(run: GateRun, markdown: string = renderMarkdown(run.report)): Promise<WrittenReport> {
  const summaryPath = path.join(run.outputDir, "quantgate-summary.md");
  await writeFileAtomic(summaryPath, markdown);
  await writeFileAtomic(run.reportPath, JSON.stringify(run.report, null, 2) + "\n");
  return { reportPath: run.reportPath, summaryPath, markdown };
}
