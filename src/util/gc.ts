// A full garbage collection on demand. The gate moves large buffers between stages (a model's weights read
// from external data, packed codes, the serialized quantized model): V8 collects them when its heuristics
// decide, which on a large model can be after the next stage has loaded an ONNX Runtime session beside them,
// and the process's peak memory then depends on timing (6.1 to 7.0 GB in two runs of one 1.1B-parameter gate).
// Collecting at stage boundaries makes the peak the live data's. Node has no gc() unless started with
// --expose-gc; the flag is set at run time and gc() taken from a fresh context, where V8 installs it.
import v8 from "node:v8";
import vm from "node:vm";

let gc: (() => void) | null | undefined;

/** Runs a full collection when the runtime allows one; otherwise does nothing. */
export function collectGarbage(): void {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString("--expose-gc");
      const fn: unknown = vm.runInNewContext("gc");
      gc = typeof fn === "function" ? (fn as () => void) : null;
    } catch {
      gc = null;
    }
  }
  gc?.();
}

/** Array buffers allowed to pile up between collections (see collectIfPiling). */
const PILE_BYTES = 256 * 2 ** 20;
let afterLast = 0;

/**
 * Collects when array buffers have grown by PILE_BYTES since the last collection here. ONNX Runtime's outputs
 * (a language model's logits: 33 MB per 2x128 batch at a 32k vocabulary) are array buffers outside V8's heap,
 * so many runs can leave a stage's worth of finished outputs behind before V8 collects on its own. Called before
 * every session run: it reads the process's memory counters (process.memoryUsage(), about 9 us here, against a
 * session run's milliseconds). (At 1.1B parameters the excess memory measured in the evaluation was
 * the emitted model kept reachable, fixed in runGate; this bounds the outputs, it was not measured alone.)
 */
export function collectIfPiling(): void {
  const now = process.memoryUsage().arrayBuffers;
  if (now < afterLast + PILE_BYTES) return;
  collectGarbage();
  afterLast = Math.min(now, process.memoryUsage().arrayBuffers);
}
