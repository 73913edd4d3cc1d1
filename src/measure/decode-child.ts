// Child process for decode measurement: loads one model, generates greedily with its KV cache, and prints
// the timings and its own peak RSS (at the longest context) as JSON on stdout; or, asked for rounds, loads the
// models given and prints each one's median step time per interleaved round.
import { createSession, loadOrt, loadOrtFrom } from "../runtime/ort.js";
import { decodeRoundsSession, measureDecodeSession, settingsOfRequest, type DecodeChildRequest, type DecodeMeasurement } from "./decode.js";

async function main(): Promise<void> {
  const req = JSON.parse(process.env.QUANTGATE_DECODE_REQUEST ?? "") as DecodeChildRequest;
  const { ort } = req.ortDir ? loadOrtFrom(req.ortDir, "tool directory") : await loadOrt();
  const settings = settingsOfRequest(req);
  if (req.rounds !== undefined) {
    const sessions = [];
    for (const p of req.modelPaths) sessions.push(await createSession(ort, p, req.threads));
    process.stdout.write(JSON.stringify(await decodeRoundsSession(ort, sessions, settings, req.rounds)));
    return;
  }
  const t0 = performance.now();
  const session = await createSession(ort, req.modelPaths[0]!, req.threads);
  const loadMs = performance.now() - t0;
  const m = await measureDecodeSession(ort, session, settings, loadMs);
  const result: DecodeMeasurement = { ...m, memoryScope: "child" };
  process.stdout.write(JSON.stringify(result));
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
