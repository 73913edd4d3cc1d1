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
/******/ /* webpack/runtime/hasOwnProperty shorthand */
/******/ (() => {
/******/ 	__nccwpck_require__.o = (obj, prop) => (Object.prototype.hasOwnProperty.call(obj, prop))
/******/ })();
/******/ 
/************************************************************************/
var __webpack_exports__ = {};

;// CONCATENATED MODULE: external "node:fs/promises"
const promises_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:fs/promises");
;// CONCATENATED MODULE: ./lib/data/tensors.js
function toOrtFeeds(ort, feeds) {
    const out = {};
    for (const [name, t] of Object.entries(feeds))
        out[name] = new ort.Tensor(t.type, t.data, t.dims);
    return out;
}
const ELEM_TYPES = { 1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool" };
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

;// CONCATENATED MODULE: ./lib/runtime/ort.js
// Access to ONNX Runtime: the module is loaded once (from a given path, the normal dependency,
// or the action's installed tool directory) and sessions are created with fixed threading.



/** The pinned runtime this release of QuantGate is tested with. */
const ORT_VERSION = "1.30.0";
let loaded;
/** Load onnxruntime-node from a package folder (containing node_modules/onnxruntime-node or the package itself). */
function loadOrtFrom(dir, source) {
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
    try {
        return typeof model === "string" ? await ort.InferenceSession.create(model, opts) : await ort.InferenceSession.create(model, opts);
    }
    catch (err) {
        const where = typeof model === "string" ? model : "in-memory model";
        throw new UserError(`ONNX Runtime could not load ${where}: ${err.message}`);
    }
}

;// CONCATENATED MODULE: ./lib/measure/child-main.js
// Child process that loads one model, runs it, and prints latency and peak RSS as JSON on stdout.
// Run in its own process so peak memory belongs to that model alone.



async function main() {
    const req = JSON.parse(process.env.QUANTGATE_MEASURE_REQUEST ?? "");
    const { ort } = req.ortDir ? loadOrtFrom(req.ortDir, "tool directory") : await loadOrt();
    const feeds = toOrtFeeds(ort, feedsFromJson(await (0,promises_namespaceObject.readFile)(req.feedsPath, "utf8")));
    const t0 = performance.now();
    const session = await createSession(ort, req.modelPath, req.threads);
    const loadMs = performance.now() - t0;
    const rssAfterLoadBytes = process.memoryUsage.rss();
    for (let i = 0; i < req.warmup; i++)
        await session.run(feeds);
    const latenciesMs = [];
    for (let i = 0; i < req.runs; i++) {
        const start = performance.now();
        await session.run(feeds);
        latenciesMs.push(performance.now() - start);
    }
    // maxRSS is in kilobytes.
    const result = { latenciesMs, peakRssBytes: process.resourceUsage().maxRSS * 1024, rssAfterLoadBytes, loadMs };
    process.stdout.write(JSON.stringify(result));
}
main().catch((err) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
});

