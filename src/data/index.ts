// Shared pieces of the data readers: model input descriptions, file hashes, tokenizers, nested JSON arrays.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Tokenizer } from "@huggingface/tokenizers";
import { UserError } from "../errors.js";
import type { FeedType } from "./tensors.js";

export interface ModelInputInfo {
  readonly name: string;
  readonly type: FeedType;
  readonly rank: number | undefined;
  /** Declared sizes per axis (undefined where symbolic), when the model declares a shape. */
  readonly dims?: readonly (number | undefined)[];
}

export interface DataFileHash {
  readonly path: string;
  readonly sha256: string;
}

export async function readData(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new UserError(`${file}: cannot read ${what} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
}

export function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

export async function loadTokenizer(file: string): Promise<Tokenizer> {
  const bytes = await readData(file, "tokenizer");
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch (err) {
    throw new UserError(`${file}: tokenizer is not valid JSON (${(err as Error).message})`, file);
  }
  if (typeof json !== "object" || json === null || !("model" in json)) {
    throw new UserError(`${file}: expected a Hugging Face tokenizer.json with a "model" field`, file);
  }
  try {
    return new Tokenizer(json, {});
  } catch (err) {
    throw new UserError(`${file}: tokenizer could not be built (${(err as Error).message})`, file);
  }
}

type Nested = number | Nested[];

/** Nested JSON arrays -> dims and flat values (rectangular only). */
export function flattenNested(value: unknown, where: string): { dims: number[]; values: number[] } {
  const dims: number[] = [];
  let probe: unknown = value;
  while (Array.isArray(probe)) {
    dims.push(probe.length);
    probe = probe[0];
  }
  const values: number[] = [];
  const walk = (v: Nested | unknown, depth: number): void => {
    if (depth === dims.length) {
      if (typeof v !== "number" && typeof v !== "boolean") throw new UserError(`${where}: expected a number, got ${JSON.stringify(v)?.slice(0, 40)}`);
      values.push(Number(v));
      return;
    }
    if (!Array.isArray(v) || v.length !== dims[depth]) throw new UserError(`${where}: ragged array (expected length ${dims[depth]} at depth ${depth})`);
    for (const item of v) walk(item, depth + 1);
  };
  walk(value, 0);
  return { dims, values };
}
