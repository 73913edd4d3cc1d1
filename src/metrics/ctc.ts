// CTC greedy decoding and symbol dictionaries as OCR packages ship them (one symbol per line): pure functions.

/**
 * The symbols of a dictionary file, one per line, in class order. Only the line break is removed (a line holding a
 * single space is the space symbol); a final line break does not add an empty symbol. `appendSpace` adds " " after
 * the last line, as PaddleOCR's `use_space_char` does. An empty line in the middle is an error: it would shift
 * every later class by one.
 */
export function parseDictionary(text: string, file: string, appendSpace = false): string[] {
  const body = text.startsWith("\ufeff") ? text.slice(1) : text;
  const lines = body.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const symbols: string[] = [];
  lines.forEach((line, i) => {
    if (line === "") throw new Error(`${file}:${i + 1}: empty line in the dictionary (one symbol per line; a space is a line holding one space)`);
    symbols.push(line);
  });
  if (appendSpace) symbols.push(" ");
  if (symbols.length === 0) throw new Error(`${file}: the dictionary has no symbols`);
  return symbols;
}

/** Argmax over classes of each frame of a [frames, classes] score matrix (row-major); ties go to the lower class. */
export function argmaxFrames(scores: ArrayLike<number>, frames: number, classes: number): Int32Array {
  if (scores.length !== frames * classes) throw new RangeError(`internal: ${scores.length} scores for ${frames} frames x ${classes} classes`);
  const out = new Int32Array(frames);
  for (let t = 0; t < frames; t++) {
    let best = 0;
    let bestValue = -Infinity;
    for (let c = 0; c < classes; c++) {
      const v = scores[t * classes + c]!;
      if (v > bestValue) {
        bestValue = v;
        best = c;
      }
    }
    out[t] = best;
  }
  return out;
}

/** CTC collapse of per-frame class ids: merge runs of the same class, then drop the blank. */
export function ctcCollapse(ids: ArrayLike<number>, blank: number): number[] {
  const out: number[] = [];
  let previous = -1;
  for (let t = 0; t < ids.length; t++) {
    const k = ids[t]!;
    if (k !== previous && k !== blank) out.push(k);
    previous = k;
  }
  return out;
}

/** CTC greedy (best path) decode of a [frames, classes] score matrix: argmax per frame, collapse, drop blank. */
export function ctcGreedyDecode(scores: ArrayLike<number>, frames: number, classes: number, blank: number): number[] {
  if (blank < 0 || blank >= classes) throw new RangeError(`CTC blank index ${blank} is outside the output's ${classes} classes`);
  return ctcCollapse(argmaxFrames(scores, frames, classes), blank);
}

/**
 * Text of CTC classes: the classes other than the blank map to the dictionary's symbols in order, so with the
 * blank at 0 (PaddleOCR, EasyOCR) class c is line c of the file counted from 1, and with the blank last (TensorFlow's
 * ctc_loss) class c is line c + 1.
 */
export function ctcClassesToText(classes: readonly number[], symbols: readonly string[], blank: number): string {
  let text = "";
  for (const c of classes) {
    const index = c > blank ? c - 1 : c;
    const symbol = symbols[index];
    if (symbol === undefined) throw new RangeError(`class ${c} has no symbol: the dictionary has ${symbols.length} symbols and the blank is ${blank}`);
    text += symbol;
  }
  return text;
}

/**
 * Text of symbol ids (an output that already holds ids, e.g. an attention decoder's): id i is the symbol on line
 * i - offset + 1 of the dictionary (offset 0: id 0 is the first line); ids in `skip` (padding, start) are dropped;
 * decoding stops at `eos`.
 */
export function idsToText(
  ids: ArrayLike<number | bigint>,
  symbols: readonly string[],
  opts: { offset?: number; skip?: readonly number[]; eos?: number } = {},
): string {
  const skip = new Set(opts.skip ?? []);
  const offset = opts.offset ?? 0;
  let text = "";
  for (let i = 0; i < ids.length; i++) {
    const id = Number(ids[i]);
    if (opts.eos !== undefined && id === opts.eos) break;
    if (skip.has(id)) continue;
    const symbol = symbols[id - offset];
    if (symbol === undefined) throw new RangeError(`symbol id ${id} has no symbol: the dictionary has ${symbols.length} symbols (offset ${offset})`);
    text += symbol;
  }
  return text;
}
