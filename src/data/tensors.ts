// Runtime-neutral input tensors, so data loaders need no ONNX Runtime and feeds can be cached or sent to a child.
import type { Ort, OrtTensor } from "../runtime/ort.js";
import { floatToHalf } from "../util/half.js";

export type FeedType = "float32" | "int64" | "int32" | "bool" | "uint8" | "int8" | "float16";

export interface FeedTensor {
  readonly type: FeedType;
  readonly dims: readonly number[];
  /** float16 data is the IEEE half-precision bits. */
  readonly data: Float32Array | BigInt64Array | Int32Array | Uint8Array | Int8Array | Uint16Array;
}

export type Feeds = Record<string, FeedTensor>;

export function toOrtFeeds(ort: Ort, feeds: Feeds): Record<string, OrtTensor> {
  const out: Record<string, OrtTensor> = {};
  for (const [name, t] of Object.entries(feeds)) out[name] = new ort.Tensor(t.type, t.data, t.dims as number[]);
  return out;
}

const ELEM_TYPES: Record<number, FeedType> = { 1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16" };

export function feedTypeOf(elemType: number): FeedType | undefined {
  return ELEM_TYPES[elemType];
}

export function makeFeedData(type: FeedType, values: readonly number[]): FeedTensor["data"] {
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
export function feedsToJson(feeds: Feeds): string {
  return JSON.stringify(
    Object.fromEntries(
      Object.entries(feeds).map(([k, t]) => [
        k,
        { type: t.type, dims: t.dims, data: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString("base64") },
      ]),
    ),
  );
}

export function feedsFromJson(json: string): Feeds {
  const raw = JSON.parse(json) as Record<string, { type: FeedType; dims: number[]; data: string }>;
  const out: Feeds = {};
  for (const [k, v] of Object.entries(raw)) {
    const buf = Buffer.from(v.data, "base64");
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    const data =
      v.type === "float32"
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
