// The measuring child: a fresh process (spawned and exec'd, never holding the parent's memory) that either
// loads one model and reads its own peak memory after load and after runs, or loads the float and the
// quantized model and times them in interleaved rounds. It reports over the IPC channel and exits
// when its parent goes away.
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { feedsFromJson, toOrtFeeds } from "../data/tensors.js";
import { createSession, loadOrt, loadOrtFrom, type Session } from "../runtime/ort.js";
import { readPeakRss, resetPeakRss, type MemorySource } from "./memory.js";

interface BaseRequest {
  readonly feedsPath: string;
  readonly threads: number;
  readonly ortDir?: string;
}

export interface MemoryRequest extends BaseRequest {
  readonly kind: "memory";
  readonly modelPath: string;
  /** Runs after load whose peak is the run peak (the first grows ONNX Runtime's arenas). */
  readonly runs: number;
}

export interface LatencyRequest extends BaseRequest {
  readonly kind: "latency";
  /** Timed in interleaved rounds; each round runs every model once, in alternating order. */
  readonly modelPaths: readonly string[];
  readonly warmup: number;
  readonly runs: number;
}

export type ChildRequest = MemoryRequest | LatencyRequest;

export interface MemoryResult {
  readonly kind: "memory";
  /** Peak resident memory of the process at the end of the load (Node + ONNX Runtime + the model, transient load buffers included). */
  readonly loadPeakBytes: number;
  /** Peak resident memory while running (after the load's peak was reset); equals the overall peak where the reset is refused. */
  readonly runPeakBytes: number;
  readonly peakBytes: number;
  readonly rssAfterLoadBytes: number;
  readonly source: MemorySource;
  /** Whether the load peak could be reset before the runs (Linux clear_refs). */
  readonly separated: boolean;
  readonly loadMs: number;
}

export interface LatencyResult {
  readonly kind: "latency";
  /** Per model (in request order): the timed runs, in round order. */
  readonly latenciesMs: number[][];
  /** Per model and run: whether the process was involuntarily switched out (preempted by another process) during it. */
  readonly preempted: boolean[][];
  /**
   * Per model and run: the time the measuring thread was runnable but waited for a core (Linux schedstat),
   * in ms; absent where the kernel does not expose it.
   */
  readonly waitMs?: number[][];
  readonly loadMs: number[];
}

/** Messages to the parent: progress (so its timeout follows the measured warm-up), then one result or error. */
export type ChildMessage =
  | { readonly type: "loaded"; readonly loadMs: number }
  | { readonly type: "warm"; readonly perRunMs: number; readonly remainingRuns: number }
  | { readonly type: "result"; readonly result: MemoryResult | LatencyResult }
  | { readonly type: "error"; readonly message: string };

function send(message: ChildMessage): Promise<void> {
  if (!process.send) {
    process.stdout.write(JSON.stringify(message) + "\n");
    return Promise.resolve();
  }
  return new Promise((resolve) => process.send!(message, undefined, undefined, () => resolve()));
}

const involuntarySwitches = (): number => process.resourceUsage().involuntaryContextSwitches;

/**
 * Nanoseconds this thread has spent runnable but waiting for a CPU (second field of
 * /proc/thread-self/schedstat), or undefined without schedstat. With one intra-op thread ONNX Runtime
 * computes on this (the calling) thread, so this is the time another process took from the run.
 */
export function runQueueWaitNs(): number | undefined {
  try {
    const fields = readFileSync("/proc/thread-self/schedstat", "utf8").trim().split(/\s+/);
    const wait = Number(fields[1]);
    return Number.isFinite(wait) ? wait : undefined;
  } catch {
    return undefined;
  }
}

/**
 * ONNX Runtime's run resolves without passing through the event loop, so a loop of awaited runs would
 * never see the parent's channel close: yield between runs (outside the timed section).
 */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function measureMemory(req: MemoryRequest, feeds: Record<string, unknown>, ort: Parameters<typeof createSession>[0]): Promise<MemoryResult> {
  const t0 = performance.now();
  const session = await createSession(ort, req.modelPath, req.threads);
  const loadMs = performance.now() - t0;
  const rssAfterLoadBytes = process.memoryUsage.rss();
  const load = readPeakRss();
  const separated = load.source === "VmHWM" && resetPeakRss();
  await send({ type: "loaded", loadMs });
  const t1 = performance.now();
  for (let i = 0; i < req.runs; i++) {
    await session.run(feeds as never);
    await yieldToEventLoop();
  }
  await send({ type: "warm", perRunMs: (performance.now() - t1) / Math.max(1, req.runs), remainingRuns: 0 });
  const run = readPeakRss();
  return {
    kind: "memory",
    loadPeakBytes: load.bytes,
    runPeakBytes: run.bytes,
    peakBytes: Math.max(load.bytes, run.bytes),
    rssAfterLoadBytes,
    source: run.source,
    separated,
    loadMs,
  };
}

async function measureLatency(req: LatencyRequest, feeds: Record<string, unknown>, ort: Parameters<typeof createSession>[0]): Promise<LatencyResult> {
  const sessions: Session[] = [];
  const loadMs: number[] = [];
  for (const p of req.modelPaths) {
    const t0 = performance.now();
    sessions.push(await createSession(ort, p, req.threads));
    loadMs.push(performance.now() - t0);
  }
  await send({ type: "loaded", loadMs: loadMs.reduce((a, b) => a + b, 0) });
  const m = sessions.length;
  const t1 = performance.now();
  // Warm-up: at least one run of each model, so the timeout always has a per-round time to follow.
  const warmRounds = Math.max(1, req.warmup);
  for (let i = 0; i < warmRounds; i++) {
    for (const s of sessions) await s.run(feeds as never);
    await yieldToEventLoop();
  }
  await send({ type: "warm", perRunMs: (performance.now() - t1) / warmRounds, remainingRuns: req.runs });
  const latenciesMs = sessions.map(() => [] as number[]);
  const preempted = sessions.map(() => [] as boolean[]);
  const waitMs = sessions.map(() => [] as number[]);
  let haveWait = true;
  for (let r = 0; r < req.runs; r++) {
    // Alternate the order (AB, BA, ...) so neither model always runs right after the other's cache traffic.
    for (let j = 0; j < m; j++) {
      const idx = r % 2 === 0 ? j : m - 1 - j;
      const before = involuntarySwitches();
      const wait0 = runQueueWaitNs();
      const start = performance.now();
      await sessions[idx]!.run(feeds as never);
      const ms = performance.now() - start;
      const wait1 = runQueueWaitNs();
      latenciesMs[idx]!.push(ms);
      preempted[idx]!.push(involuntarySwitches() > before);
      if (wait0 === undefined || wait1 === undefined) haveWait = false;
      else waitMs[idx]!.push(Math.min(ms, (wait1 - wait0) / 1e6));
    }
    await yieldToEventLoop();
  }
  return { kind: "latency", latenciesMs, preempted, loadMs, ...(haveWait ? { waitMs } : {}) };
}

/**
 * The parent going away (killed, crashed: SIGKILL cannot be caught there) closes the IPC channel, or
 * re-parents this process: stop rather than run on as an orphan. The channel may have closed before
 * this module ran, hence the checks of `connected` and of the parent's pid as well as the event.
 */
function watchParent(): void {
  const orphaned = (): void => process.exit(3);
  if (!process.send) return;
  process.on("disconnect", orphaned);
  if (!process.connected) orphaned();
  const parent = Number(process.env.QUANTGATE_PARENT_PID);
  if (Number.isInteger(parent) && parent > 0) {
    if (process.ppid !== parent) orphaned();
    setInterval(() => {
      if (process.ppid !== parent) orphaned();
    }, 500).unref();
  }
}

async function main(): Promise<void> {
  watchParent();
  const req = JSON.parse(process.env.QUANTGATE_MEASURE_REQUEST ?? "") as ChildRequest;
  const { ort } = req.ortDir ? loadOrtFrom(req.ortDir, "tool directory") : await loadOrt();
  const feeds = toOrtFeeds(ort, feedsFromJson(await readFile(req.feedsPath, "utf8")));
  const result = req.kind === "memory" ? await measureMemory(req, feeds, ort) : await measureLatency(req, feeds, ort);
  await send({ type: "result", result });
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    await send({ type: "error", message: (err as Error).message });
    process.exit(1);
  },
);
