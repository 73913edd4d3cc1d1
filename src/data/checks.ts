// Checks of evaluation data against the model, each naming the file and line: class labels inside the model's classes.
import { readFile } from "node:fs/promises";
import type { GraphProto } from "onnx-buf";
import { UserError } from "../errors.js";
import type { ModelInputInfo } from "./index.js";
import type { Feeds } from "./tensors.js";

/** The class count of a classification output: its declared last dimension (undefined when symbolic). */
export function declaredClasses(graph: GraphProto, outputName: string | undefined): number | undefined {
  const out = outputName ? graph.output.find((o) => o.name === outputName) : graph.output[0];
  if (out?.type?.value.case !== "tensorType") return undefined;
  const dims = out.type.value.value.shape?.dim ?? [];
  const last = dims[dims.length - 1];
  return last?.value.case === "dimValue" ? Number(last.value.value) : undefined;
}

/** Every label of a JSONL file lies in 0..classes-1 (the loader has already checked they are integers). */
export async function checkJsonlLabels(file: string, labelField: string, classes: number | undefined): Promise<void> {
  if (classes === undefined || classes < 1) return;
  const lines = (await readFile(file, "utf8")).split("\n");
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    let label: unknown;
    try {
      label = (JSON.parse(line) as Record<string, unknown>)[labelField];
    } catch {
      return; // the loader reports malformed lines
    }
    if (typeof label === "number" && (label < 0 || label >= classes)) {
      throw new UserError(`${file}:${i + 1}: label ${label} is outside the model's ${classes} classes (0-${classes - 1})`, file, i + 1);
    }
  });
}

/** Each feed's shape against the sizes the model declares (symbolic axes accept any size). */
export function checkFeedShapes(feedsList: readonly Feeds[], inputs: readonly ModelInputInfo[], where: (index: number) => string): void {
  feedsList.forEach((feeds, index) => {
    for (const input of inputs) {
      const t = feeds[input.name];
      if (!t || !input.dims || input.dims.length !== t.dims.length) continue;
      input.dims.forEach((declared, axis) => {
        if (declared !== undefined && declared > 0 && t.dims[axis] !== declared) {
          const want = input.dims!.map((d) => (d === undefined ? "?" : String(d))).join(", ");
          throw new UserError(
            `${where(index)}: input "${input.name}" has shape [${t.dims.join(", ")}], the model declares [${want}] (axis ${axis}: ${t.dims[axis]} vs ${declared})`,
          );
        }
      });
    }
  });
}

/**
 * ONNX Runtime failing on the language-modeling batches is nearly always a sequence longer than the model's
 * position table: say so with the key and line, and keep ONNX Runtime's first line.
 */
export function explainLmFailure(err: unknown, seqLen: number, batch: number, file: string, line: number | undefined): Error {
  if (err instanceof UserError) return err;
  const ort = ((err as Error)?.message ?? String(err)).split("\n")[0]!;
  return new UserError(
    `${file}${line ? `:${line}` : ""} evaluation.sequence_length: the model failed on batches of ${batch}x${seqLen} tokens ` +
      `(ONNX Runtime: ${ort.slice(0, 300)}). A model whose position table holds fewer than ${seqLen} positions cannot run them: lower evaluation.sequence_length.`,
    file,
    line,
  );
}
