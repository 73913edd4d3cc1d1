// Reading model outputs as float32 arrays, with errors that name the output and list the model's outputs.
import type { OrtTensor, Session } from "../runtime/ort.js";

export function float32Output(session: Session, result: Record<string, OrtTensor>, name: string | undefined): { data: Float32Array; dims: readonly number[] } {
  const key = name ?? session.outputNames[0]!;
  const t = result[key];
  if (!t) throw new Error(`model produced no output "${key}" (outputs: ${session.outputNames.join(", ")})`);
  if (!(t.data instanceof Float32Array)) throw new Error(`output "${key}" is not float32 logits`);
  return { data: t.data, dims: t.dims };
}
