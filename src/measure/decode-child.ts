// Child process for decode measurement: loads one model, generates greedily with its KV cache, and prints
// the timings and its own peak RSS (at the longest context) as JSON on stdout.
import { createSession, loadOrt, loadOrtFrom } from "../runtime/ort.js";
import { measureDecodeSession, type DecodeChildRequest, type DecodeMeasurement } from "./decode.js";

async function main(): Promise<void> {
  const req = JSON.parse(process.env.QUANTGATE_DECODE_REQUEST ?? "") as DecodeChildRequest;
  const { ort } = req.ortDir ? loadOrtFrom(req.ortDir, "tool directory") : await loadOrt();
  const t0 = performance.now();
  const session = await createSession(ort, req.modelPath, req.threads);
  const loadMs = performance.now() - t0;
  const m = await measureDecodeSession(ort, session, req, loadMs);
  const result: DecodeMeasurement = { ...m, memoryScope: "child" };
  process.stdout.write(JSON.stringify(result));
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
