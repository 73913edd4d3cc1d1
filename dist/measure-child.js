import { createRequire as __WEBPACK_EXTERNAL_createRequire } from "module";
/******/ var __webpack_modules__ = ({

/***/ 148:
/***/ ((module) => {

function webpackEmptyAsyncContext(req) {
	// Here Promise.resolve().then() is used instead of new Promise() to prevent
	// uncaught exception popping up in devtools
	return Promise.resolve().then(() => {
		var e = new Error("Cannot find module '" + req + "'");
		e.code = 'MODULE_NOT_FOUND';
		throw e;
	});
}
webpackEmptyAsyncContext.keys = () => ([]);
webpackEmptyAsyncContext.resolve = webpackEmptyAsyncContext;
webpackEmptyAsyncContext.id = 148;
module.exports = webpackEmptyAsyncContext;

/***/ })

/******/ });
/************************************************************************/
/******/ // The module cache
/******/ var __webpack_module_cache__ = {};
/******/ 
/******/ // The require function
/******/ function __nccwpck_require__(moduleId) {
/******/ 	// Check if module is in cache
/******/ 	var cachedModule = __webpack_module_cache__[moduleId];
/******/ 	if (cachedModule !== undefined) {
/******/ 		return cachedModule.exports;
/******/ 	}
/******/ 	// Create a new module (and put it into the cache)
/******/ 	var module = __webpack_module_cache__[moduleId] = {
/******/ 		// no module.id needed
/******/ 		// no module.loaded needed
/******/ 		exports: {}
/******/ 	};
/******/ 
/******/ 	// Execute the module function
/******/ 	var threw = true;
/******/ 	try {
/******/ 		__webpack_modules__[moduleId](module, module.exports, __nccwpck_require__);
/******/ 		threw = false;
/******/ 	} finally {
/******/ 		if(threw) delete __webpack_module_cache__[moduleId];
/******/ 	}
/******/ 
/******/ 	// Return the exports of the module
/******/ 	return module.exports;
/******/ }
/******/ 
/************************************************************************/
/******/ /* webpack/runtime/asset-relocator-loader */
/******/ if (typeof __nccwpck_require__ !== 'undefined') __nccwpck_require__.ab = decodeURIComponent(new URL('.', import.meta.url).pathname).slice(import.meta.url.match(/^file:\/\/\/\w:/) ? 1 : 0, -1) + "/";
/******/ 
/******/ /* webpack/runtime/define property getters */
/******/ (() => {
/******/ 	// define getter functions for harmony exports
/******/ 	__nccwpck_require__.d = (exports, definition) => {
/******/ 		for(var key in definition) {
/******/ 			if(__nccwpck_require__.o(definition, key) && !__nccwpck_require__.o(exports, key)) {
/******/ 				Object.defineProperty(exports, key, { enumerable: true, get: definition[key] });
/******/ 			}
/******/ 		}
/******/ 	};
/******/ })();
/******/ 
/******/ /* webpack/runtime/hasOwnProperty shorthand */
/******/ (() => {
/******/ 	__nccwpck_require__.o = (obj, prop) => (Object.prototype.hasOwnProperty.call(obj, prop))
/******/ })();
/******/ 
/************************************************************************/
var __webpack_exports__ = {};

// EXPORTS
__nccwpck_require__.d(__webpack_exports__, {
  D: () => (/* binding */ runQueueWaitNs)
});

;// CONCATENATED MODULE: external "node:fs"
const external_node_fs_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:fs");
;// CONCATENATED MODULE: external "node:fs/promises"
const promises_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:fs/promises");
;// CONCATENATED MODULE: ./lib/data/tensors.js

function toOrtFeeds(ort, feeds) {
    const out = {};
    for (const [name, t] of Object.entries(feeds))
        out[name] = new ort.Tensor(t.type, t.data, t.dims);
    return out;
}
const ELEM_TYPES = { 1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16" };
function feedTypeOf(elemType) {
    return ELEM_TYPES[elemType];
}
function makeFeedData(type, values) {
    switch (type) {
        case "float32":
            return Float32Array.from(values);
        case "int64":
            return BigInt64Array.from(values.map((v) => BigInt(Math.trunc(v))));
        case "int32":
            return Int32Array.from(values);
        case "int8":
            return Int8Array.from(values);
        case "float16":
            return Uint16Array.from(values, (v) => floatToHalf(v));
        default:
            return Uint8Array.from(values);
    }
}
/** Serialize feeds to JSON (for the measuring child process). */
function feedsToJson(feeds) {
    return JSON.stringify(Object.fromEntries(Object.entries(feeds).map(([k, t]) => [
        k,
        { type: t.type, dims: t.dims, data: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString("base64") },
    ])));
}
function feedsFromJson(json) {
    const raw = JSON.parse(json);
    const out = {};
    for (const [k, v] of Object.entries(raw)) {
        const buf = Buffer.from(v.data, "base64");
        const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
        const data = v.type === "float32"
            ? new Float32Array(ab)
            : v.type === "int64"
                ? new BigInt64Array(ab)
                : v.type === "int32"
                    ? new Int32Array(ab)
                    : v.type === "int8"
                        ? new Int8Array(ab)
                        : v.type === "float16"
                            ? new Uint16Array(ab)
                            : new Uint8Array(ab);
        out[k] = { type: v.type, dims: v.dims, data };
    }
    return out;
}

;// CONCATENATED MODULE: external "node:module"
const external_node_module_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:module");
;// CONCATENATED MODULE: external "node:path"
const external_node_path_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:path");
;// CONCATENATED MODULE: ./lib/errors.js
// Error classes: what the user must fix versus optional extras that went wrong.
/** Bad input (config, model, dataset): fails the gate with a message that names the file and field. */
class UserError extends Error {
    file;
    line;
    name = "UserError";
    constructor(message, file, line) {
        super(message);
        this.file = file;
        this.line = line;
    }
}
/** An optional extra (PR comment, artifact upload) failed: a warning, the gate still decides. */
class OptionalStepError extends (/* unused pure expression or super */ null && (Error)) {
    name = "OptionalStepError";
}
const ERRNO_TEXT = {
    EACCES: "permission denied",
    EPERM: "operation not permitted",
    ENOSPC: "no space left on the device",
    EDQUOT: "disk quota exceeded",
    EROFS: "read-only file system",
    ENOENT: "no such file or folder",
    ENOTDIR: "a part of the path is not a folder",
    EISDIR: "it is a folder",
    EEXIST: "it already exists",
    EMFILE: "too many open files",
    EIO: "input/output error",
};
/** A short reason for a file-system error ("permission denied (EACCES)"), for messages that name the file. */
function fsReason(err) {
    const code = err?.code;
    if (code && ERRNO_TEXT[code])
        return `${ERRNO_TEXT[code]} (${code})`;
    return code ?? err?.message ?? String(err);
}
/** An output file could not be written (permission, disk full, read-only): the user's environment, not a bug. */
class OutputWriteError extends UserError {
    constructor(file, err) {
        super(`cannot write ${file}: ${fsReason(err)}`, file);
    }
}

;// CONCATENATED MODULE: external "node:v8"
const external_node_v8_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:v8");
;// CONCATENATED MODULE: external "node:vm"
const external_node_vm_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:vm");
;// CONCATENATED MODULE: ./lib/util/gc.js
// A full garbage collection on demand. The gate moves large buffers between stages (a model's weights read
// from external data, packed codes, the serialized quantized model): V8 collects them when its heuristics
// decide, which on a large model can be after the next stage has loaded an ONNX Runtime session beside them,
// and the process's peak memory then depends on timing (6.1 to 7.0 GB in two runs of one 1.1B-parameter gate).
// Collecting at stage boundaries makes the peak the live data's. Node has no gc() unless started with
// --expose-gc; the flag is set at run time and gc() taken from a fresh context, where V8 installs it.


let gc;
/** Runs a full collection when the runtime allows one; otherwise does nothing. */
function collectGarbage() {
    if (gc === undefined) {
        try {
            external_node_v8_namespaceObject.setFlagsFromString("--expose-gc");
            const fn = external_node_vm_namespaceObject.runInNewContext("gc");
            gc = typeof fn === "function" ? fn : null;
        }
        catch {
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
function collectIfPiling() {
    const now = process.memoryUsage().arrayBuffers;
    if (now < afterLast + PILE_BYTES)
        return;
    collectGarbage();
    afterLast = Math.min(now, process.memoryUsage().arrayBuffers);
}

;// CONCATENATED MODULE: ./lib/runtime/ort.js
// Access to ONNX Runtime: the module is loaded once (from a given path, the normal dependency,
// or the action's installed tool directory) and sessions are created with fixed threading.




/** The pinned runtime this release of QuantGate is tested with. */
const ORT_VERSION = "1.30.0";
let loaded;
/**
 * ONNX Runtime 1.30 keeps a device id and a queue of telemetry events (model file names, error messages) under
 * $XDG_CACHE_HOME or ~/.cache/Microsoft/DeveloperTools/.onnxruntime unless ORT_DISABLE_TELEMETRY is set when the
 * library loads. QuantGate sets it (children inherit it) unless the user set the variable themselves.
 */
function disableOrtTelemetry(env = process.env) {
    if (env.ORT_DISABLE_TELEMETRY === undefined)
        env.ORT_DISABLE_TELEMETRY = "1";
}
/** Load onnxruntime-node from a package folder (containing node_modules/onnxruntime-node or the package itself). */
function loadOrtFrom(dir, source) {
    disableOrtTelemetry();
    const require = (0,external_node_module_namespaceObject.createRequire)(external_node_path_namespaceObject.join(external_node_path_namespaceObject.resolve(dir), "noop.js"));
    const candidates = [external_node_path_namespaceObject.join(dir, "node_modules", "onnxruntime-node"), dir];
    const errors = [];
    for (const candidate of candidates) {
        try {
            const ort = require(candidate);
            const pkg = require(external_node_path_namespaceObject.join(candidate, "package.json"));
            loaded = { ort, version: pkg.version, source };
            return loaded;
        }
        catch (err) {
            errors.push(`${candidate}: ${err.message.split("\n")[0]}`);
        }
    }
    throw new UserError(`cannot load onnxruntime-node from ${dir}:\n  ${errors.join("\n  ")}`);
}
/** The normal dependency (CLI, tests, a checkout with node_modules). */
async function loadOrt() {
    if (loaded)
        return loaded;
    disableOrtTelemetry();
    const specifier = "onnxruntime-node";
    const mod = (await __nccwpck_require__(148)(specifier));
    const ort = mod.default ?? mod;
    const require = (0,external_node_module_namespaceObject.createRequire)(import.meta.url);
    let version = "unknown";
    try {
        version = require(`${specifier}/package.json`).version;
    }
    catch {
        version = ort.env.versions?.common ?? "unknown";
    }
    loaded = { ort, version, source: "node_modules" };
    return loaded;
}
function setLoadedOrt(value) {
    loaded = value;
}
function currentOrt() {
    if (!loaded)
        throw new Error("internal: ONNX Runtime used before it was loaded");
    return loaded;
}
async function createSession(ort, model, threads) {
    const opts = {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: "sequential",
        graphOptimizationLevel: "all",
        executionProviders: ["cpu"],
    };
    let session;
    try {
        session = typeof model === "string" ? await ort.InferenceSession.create(model, opts) : await ort.InferenceSession.create(model, opts);
    }
    catch (err) {
        const where = typeof model === "string" ? model : "in-memory model";
        throw new UserError(`ONNX Runtime could not load ${where}: ${err.message}`);
    }
    // Earlier runs' outputs are collected once they pile up (src/util/gc.ts), before this run allocates more.
    const run = session.run.bind(session);
    session.run = ((...args) => {
        collectIfPiling();
        return run(...args);
    });
    return session;
}

;// CONCATENATED MODULE: ./lib/measure/memory.js
// Peak memory of the current process alone. On Linux the exec'd child's /proc/self/status VmHWM belongs
// to its own address space, while getrusage's maxrss keeps the high-water mark of the parent it was
// forked from (the kernel carries it across fork and exec): a 1 GiB parent made every child read 1 GiB.

/** VmHWM (peak resident set of this address space) from a /proc/<pid>/status text, in bytes. */
function parseVmHwm(status) {
    const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
}
/** This process's peak resident memory: VmHWM where /proc has it, else getrusage's maxrss (which on some platforms includes the parent's peak). */
function readPeakRss() {
    try {
        const bytes = parseVmHwm((0,external_node_fs_namespaceObject.readFileSync)("/proc/self/status", "utf8"));
        if (bytes !== undefined)
            return { bytes, source: "VmHWM" };
    }
    catch {
        // not Linux: fall through
    }
    return { bytes: process.resourceUsage().maxRSS * 1024, source: "maxrss" };
}
/**
 * Resets the peak to the current resident set (Linux >= 4.0: writing 5 to /proc/self/clear_refs), so
 * that the next reading is the peak of what follows alone. Returns false where the kernel refuses.
 */
function resetPeakRss() {
    try {
        (0,external_node_fs_namespaceObject.writeFileSync)("/proc/self/clear_refs", "5");
        return true;
    }
    catch {
        return false;
    }
}

;// CONCATENATED MODULE: ./lib/measure/child-main.js
// The measuring child: a fresh process (spawned and exec'd, never holding the parent's memory) that either
// loads one model and reads its own peak memory after load and after runs, or loads the float and the
// quantized model and times them in interleaved rounds. It reports over the IPC channel and exits
// when its parent goes away.





function send(message) {
    if (!process.send) {
        process.stdout.write(JSON.stringify(message) + "\n");
        return Promise.resolve();
    }
    return new Promise((resolve) => process.send(message, undefined, undefined, () => resolve()));
}
const involuntarySwitches = () => process.resourceUsage().involuntaryContextSwitches;
/**
 * Nanoseconds this thread has spent runnable but waiting for a CPU (second field of
 * /proc/thread-self/schedstat), or undefined without schedstat. With one intra-op thread ONNX Runtime
 * computes on this (the calling) thread, so this is the time another process took from the run.
 */
function runQueueWaitNs() {
    try {
        const fields = (0,external_node_fs_namespaceObject.readFileSync)("/proc/thread-self/schedstat", "utf8").trim().split(/\s+/);
        const wait = Number(fields[1]);
        return Number.isFinite(wait) ? wait : undefined;
    }
    catch {
        return undefined;
    }
}
/**
 * ONNX Runtime's run resolves without passing through the event loop, so a loop of awaited runs would
 * never see the parent's channel close: yield between runs (outside the timed section).
 */
const yieldToEventLoop = () => new Promise((resolve) => setImmediate(resolve));
async function measureMemory(req, feeds, ort) {
    const t0 = performance.now();
    const session = await createSession(ort, req.modelPath, req.threads);
    const loadMs = performance.now() - t0;
    const rssAfterLoadBytes = process.memoryUsage.rss();
    const load = readPeakRss();
    const separated = load.source === "VmHWM" && resetPeakRss();
    await send({ type: "loaded", loadMs });
    const t1 = performance.now();
    for (let i = 0; i < req.runs; i++) {
        await session.run(feeds);
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
async function measureLatency(req, feeds, ort) {
    const sessions = [];
    const loadMs = [];
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
        for (const s of sessions)
            await s.run(feeds);
        await yieldToEventLoop();
    }
    await send({ type: "warm", perRunMs: (performance.now() - t1) / warmRounds, remainingRuns: req.runs });
    const latenciesMs = sessions.map(() => []);
    const preempted = sessions.map(() => []);
    const waitMs = sessions.map(() => []);
    let haveWait = true;
    for (let r = 0; r < req.runs; r++) {
        // Alternate the order (AB, BA, ...) so neither model always runs right after the other's cache traffic.
        for (let j = 0; j < m; j++) {
            const idx = r % 2 === 0 ? j : m - 1 - j;
            const before = involuntarySwitches();
            const wait0 = runQueueWaitNs();
            const start = performance.now();
            await sessions[idx].run(feeds);
            const ms = performance.now() - start;
            const wait1 = runQueueWaitNs();
            latenciesMs[idx].push(ms);
            preempted[idx].push(involuntarySwitches() > before);
            if (wait0 === undefined || wait1 === undefined)
                haveWait = false;
            else
                waitMs[idx].push(Math.min(ms, (wait1 - wait0) / 1e6));
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
function watchParent() {
    const orphaned = () => process.exit(3);
    if (!process.send)
        return;
    process.on("disconnect", orphaned);
    if (!process.connected)
        orphaned();
    const parent = Number(process.env.QUANTGATE_PARENT_PID);
    if (Number.isInteger(parent) && parent > 0) {
        if (process.ppid !== parent)
            orphaned();
        setInterval(() => {
            if (process.ppid !== parent)
                orphaned();
        }, 500).unref();
    }
}
async function main() {
    watchParent();
    const req = JSON.parse(process.env.QUANTGATE_MEASURE_REQUEST ?? "");
    const { ort } = req.ortDir ? loadOrtFrom(req.ortDir, "tool directory") : await loadOrt();
    const feeds = toOrtFeeds(ort, feedsFromJson(await (0,promises_namespaceObject.readFile)(req.feedsPath, "utf8")));
    const result = req.kind === "memory" ? await measureMemory(req, feeds, ort) : await measureLatency(req, feeds, ort);
    await send({ type: "result", result });
}
main().then(() => process.exit(0), async (err) => {
    await send({ type: "error", message: err.message });
    process.exit(1);
});

var __webpack_exports__runQueueWaitNs = __webpack_exports__.D;
export { __webpack_exports__runQueueWaitNs as runQueueWaitNs };
