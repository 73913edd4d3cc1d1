// Peak memory of the current process alone. On Linux the exec'd child's /proc/self/status VmHWM belongs
// to its own address space, while getrusage's maxrss keeps the high-water mark of the parent it was
// forked from (the kernel carries it across fork and exec): a 1 GiB parent made every child read 1 GiB.
import { readFileSync, writeFileSync } from "node:fs";

export type MemorySource = "VmHWM" | "maxrss";

export interface PeakReading {
  readonly bytes: number;
  readonly source: MemorySource;
}

/** VmHWM (peak resident set of this address space) from a /proc/<pid>/status text, in bytes. */
export function parseVmHwm(status: string): number | undefined {
  const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** This process's peak resident memory: VmHWM where /proc has it, else getrusage's maxrss (which on some platforms includes the parent's peak). */
export function readPeakRss(): PeakReading {
  try {
    const bytes = parseVmHwm(readFileSync("/proc/self/status", "utf8"));
    if (bytes !== undefined) return { bytes, source: "VmHWM" };
  } catch {
    // not Linux: fall through
  }
  return { bytes: process.resourceUsage().maxRSS * 1024, source: "maxrss" };
}

/**
 * Resets the peak to the current resident set (Linux >= 4.0: writing 5 to /proc/self/clear_refs), so
 * that the next reading is the peak of what follows alone. Returns false where the kernel refuses.
 */
export function resetPeakRss(): boolean {
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}
