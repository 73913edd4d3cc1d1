// Reading model outputs as float32 arrays, with errors that name the output and list the model's outputs.
import { halfToFloat } from "../onnx/model.js";
import type { OrtTensor, Session } from "../runtime/ort.js";

export function float32Output(session: Session, result: Record<string, OrtTensor>, name: string | undefined): { data: Float32Array; dims: readonly number[] } {
  const key = name ?? session.outputNames[0]!;
  const t = result[key];
  if (!t) throw new Error(`model produced no output "${key}" (outputs: ${session.outputNames.join(", ")})`);
  if (t.data instanceof Float32Array) return { data: t.data, dims: t.dims };
  // float16 models (LLM exports): widened once per call; the data is the half-precision bits (or a Float16Array).
  if (t.type === "float16") {
    const src = t.data as ArrayLike<number>;
    const out = new Float32Array(src.length);
    if (src instanceof Uint16Array) for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]!);
    else for (let i = 0; i < src.length; i++) out[i] = src[i]!;
    return { data: out, dims: t.dims };
  }
  throw new Error(`output "${key}" is not float32 or float16 logits (${t.type})`);
}
