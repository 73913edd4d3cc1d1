// Supervised child processes: each is killed when this process gets SIGINT/SIGTERM/SIGHUP or exits, and
// when it overruns a time limit that follows its reported progress (load, then the measured warm-up).
import { spawn, type ChildProcess } from "node:child_process";

const live = new Set<ChildProcess>();
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
let installed = false;

function killAll(): void {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  killAll();
  uninstall();
  // Nobody else listens: behave as if we had not either (the default action ends the process with the signal).
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
  process.on("exit", killAll);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  for (const s of SIGNALS) process.off(s, onSignal);
  process.off("exit", killAll);
}

/** Children still running (for tests and diagnostics). */
export function liveChildren(): number {
  return live.size;
}

export interface ChildTimeouts {
  /** Limit from spawn until the child reports its first progress message. */
  readonly startMs: number;
  /**
   * Limit after each progress message, given that message. Returning undefined keeps the current deadline.
   * The measuring child reports "warm" with its per-run time, and the rest of its life is sized from that.
   */
  readonly after: (message: unknown) => number | undefined;
}

export class ChildTimeoutError extends Error {}

export interface SupervisedChild<M> {
  readonly pid: number | undefined;
  readonly done: Promise<M>;
}

/**
 * Runs a Node script as a child with an IPC channel; resolves with the message `isResult` accepts, rejects
 * on an error message, a non-zero exit, or a timeout (the child is killed with SIGKILL in every case).
 */
export function runSupervisedChild<M>(
  script: string,
  env: NodeJS.ProcessEnv,
  label: string,
  timeouts: ChildTimeouts,
  isResult: (message: unknown) => M | undefined,
  errorOf: (message: unknown) => string | undefined,
): SupervisedChild<M> {
  install();
  const child = spawn(process.execPath, [script], { env, stdio: ["ignore", "ignore", "pipe", "ipc"] });
  live.add(child);
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (s: string) => {
    if (stderr.length < 64 * 1024) stderr += s;
  });
  const done = new Promise<M>((resolve, reject) => {
    let result: M | undefined;
    let failure: Error | undefined;
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number, what: string): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        failure = new ChildTimeoutError(`${label} timed out after ${(ms / 1000).toFixed(1)} s ${what} (measure.timeout sets the limit)`);
        child.kill("SIGKILL");
      }, ms);
      timer.unref();
    };
    arm(timeouts.startMs, "before it finished loading");
    child.on("message", (message: unknown) => {
      const r = isResult(message);
      if (r !== undefined) {
        result = r;
        return;
      }
      const e = errorOf(message);
      if (e !== undefined) {
        failure = new Error(`${label} failed: ${e}`);
        return;
      }
      const next = timeouts.after(message);
      if (next !== undefined) arm(next, "after its warm-up");
    });
    child.on("error", (err) => {
      failure ??= new Error(`${label}: could not start the child process: ${err.message}`);
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      live.delete(child);
      if (live.size === 0) uninstall();
      if (failure) return reject(failure);
      if (result !== undefined && code === 0) return resolve(result);
      const why = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      reject(new Error(`${label} ${why}${stderr.trim() ? `: ${stderr.trim().split("\n").slice(-5).join(" | ")}` : ""}`));
    });
  });
  return { pid: child.pid, done };
}
