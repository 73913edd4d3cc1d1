// Bundles the action (dist/index.js) and the measuring children (dist/measure-child.js, dist/decode-child.js) with ncc.
// onnxruntime-node stays external: the action installs and caches it at run time.
// Other files under dist/ (the committed kernel artifacts) are left alone.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const dist = path.join(root, "dist");
mkdirSync(dist, { recursive: true });
const ncc = path.join(root, "node_modules", ".bin", "ncc");

function bundle(entry, outName) {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "quantgate-ncc-"));
  try {
    execFileSync(ncc, ["build", path.join(root, entry), "-o", tmp, "-e", "onnxruntime-node", "--target", "es2022", "--quiet"], { stdio: "inherit" });
    copyFileSync(path.join(tmp, "index.js"), path.join(dist, outName));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

bundle("lib/index.js", "index.js");
bundle("lib/measure/child-main.js", "measure-child.js");
bundle("lib/measure/decode-child.js", "decode-child.js");
writeFileSync(path.join(dist, "package.json"), JSON.stringify({ type: "module" }) + "\n");
