// Child process that loads one model, runs it, and prints latency and peak RSS as JSON on stdout.
// Run in its own process so peak memory belongs to that model alone.
import { readFile } from "node:fs/promises";
import { feedsFromJson, toOrtFeeds } from "../data/tensors.js";
import { createSession, loadOrt, loadOrtFrom } from "../runtime/ort.js";

export interface ChildRequest {
  readonly modelPath: string;
  readonly feedsPath: string;
  readonly threads: number;
  readonly warmup: number;
  readonly runs: number;
  readonly ortDir?: string;
}

export interface ChildResult {
  readonly latenciesMs: number[];
  readonly peakRssBytes: number;
  readonly rssAfterLoadBytes: number;
  readonly loadMs: number;
}

async function main(): Promise<void> {
  const req = JSON.parse(process.env.QUANTGATE_MEASURE_REQUEST ?? "") as ChildRequest;
  const { ort } = req.ortDir ? loadOrtFrom(req.ortDir, "tool directory") : await loadOrt();
  const feeds = toOrtFeeds(ort, feedsFromJson(await readFile(req.feedsPath, "utf8")));
  const t0 = performance.now();
  const session = await createSession(ort, req.modelPath, req.threads);
  const loadMs = performance.now() - t0;
  const rssAfterLoadBytes = process.memoryUsage.rss();
  for (let i = 0; i < req.warmup; i++) await session.run(feeds);
  const latenciesMs: number[] = [];
  for (let i = 0; i < req.runs; i++) {
    const start = performance.now();
    await session.run(feeds);
    latenciesMs.push(performance.now() - start);
  }
  // maxRSS is in kilobytes.
  const result: ChildResult = { latenciesMs, peakRssBytes: process.resourceUsage().maxRSS * 1024, rssAfterLoadBytes, loadMs };
  process.stdout.write(JSON.stringify(result));
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
