// Labels files (CSV with a header, or JSONL): sample file -> class label, reference text or mask path.
// A format reader only: which kind of label a task wants is the caller's argument.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { UserError } from "../errors.js";

/** class: an integer index or a class name; text: a reference transcript; mask: the path of a mask image. */
export type LabelKind = "class" | "text" | "mask";

export interface LabelsOptions {
  /** Column (CSV) or field (JSONL) naming the sample file; default "file". */
  readonly fileField?: string;
  /** Column or field holding the label; default "label", "text" or "mask" after the kind. */
  readonly valueField?: string;
  /** Class names in index order; names in the file are looked up here (default: the file's names, sorted). */
  readonly classes?: readonly string[];
}

export interface LabelRow {
  /** The sample's path relative to the labels file's folder, with forward slashes ("eval/001.png" -> "001.png"). */
  readonly key: string;
  /** Class index (class), transcript (text) or absolute mask path (mask). */
  readonly value: number | string;
  /** 1-based line where the row starts. */
  readonly line: number;
}

export interface LabelsTable {
  readonly file: string;
  readonly kind: LabelKind;
  readonly rows: ReadonlyMap<string, LabelRow>;
  /** Class names in index order, when the file names classes. */
  readonly classes?: readonly string[];
}

const DEFAULT_VALUE_FIELD: Record<LabelKind, string> = { class: "label", text: "text", mask: "mask" };

/** Cells of a CSV text (RFC 4180: commas, double-quoted fields with "" escapes, line breaks inside quotes), each record with its line. */
export function parseCsv(text: string, file: string): { cells: string[]; line: number }[] {
  const body = text.startsWith("\ufeff") ? text.slice(1) : text;
  const records: { cells: string[]; line: number }[] = [];
  let cells: string[] = [];
  let cell = "";
  let quoted = false;
  let afterQuote = false;
  let line = 1;
  let start = 1;
  let touched = false;
  const endRecord = (): void => {
    cells.push(cell);
    if (touched || cells.length > 1 || cell !== "") records.push({ cells, line: start });
    cells = [];
    cell = "";
    touched = false;
    afterQuote = false;
  };
  for (let i = 0; i < body.length; i++) {
    const ch = body[i]!;
    if (quoted) {
      if (ch === '"') {
        if (body[i + 1] === '"') {
          cell += '"';
          i++;
        } else {
          quoted = false;
          afterQuote = true;
        }
      } else {
        if (ch === "\n") line++;
        cell += ch;
      }
      continue;
    }
    if (ch === '"') {
      if (cell !== "" || afterQuote)
        throw new UserError(`${file}:${line}: a quote inside an unquoted field (quote the whole field and double its quotes)`, file, line);
      quoted = true;
      touched = true;
    } else if (ch === ",") {
      cells.push(cell);
      cell = "";
      afterQuote = false;
      touched = true;
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && body[i + 1] === "\n") i++;
      endRecord();
      line++;
      start = line;
    } else {
      if (afterQuote) throw new UserError(`${file}:${line}: text after a closing quote`, file, line);
      cell += ch;
    }
  }
  if (quoted) throw new UserError(`${file}:${start}: a quoted field is not closed`, file, start);
  endRecord();
  return records;
}

/** Forward-slash relative path, normalized ("./a//b.png" -> "a/b.png"). */
function sampleKey(p: string): string {
  return path.posix.normalize(p.replace(/\\/g, "/")).replace(/^\.\//, "");
}

interface RawRow {
  readonly file: unknown;
  readonly value: unknown;
  readonly line: number;
}

function readRows(text: string, file: string, fileField: string, valueField: string): RawRow[] {
  if (/\.jsonl$/i.test(file)) {
    const rows: RawRow[] = [];
    text.split("\n").forEach((raw, i) => {
      const line = raw.trim();
      if (!line) return;
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (err) {
        throw new UserError(`${file}:${i + 1}: not valid JSON (${(err as Error).message})`, file, i + 1);
      }
      if (typeof row !== "object" || row === null || Array.isArray(row)) throw new UserError(`${file}:${i + 1}: expected a JSON object per line`, file, i + 1);
      const r = row as Record<string, unknown>;
      rows.push({ file: r[fileField], value: r[valueField], line: i + 1 });
    });
    return rows;
  }
  if (!/\.csv$/i.test(file)) throw new UserError(`${file}: a labels file is .csv (with a header row) or .jsonl`, file);
  const records = parseCsv(text, file);
  const header = records.shift();
  if (!header) throw new UserError(`${file}: empty labels file (expected a header row such as "${fileField},${valueField}")`, file, 1);
  const fileCol = header.cells.indexOf(fileField);
  const valueCol = header.cells.indexOf(valueField);
  if (fileCol < 0 || valueCol < 0)
    throw new UserError(
      `${file}:${header.line}: the header (${header.cells.join(",")}) has no ${fileCol < 0 ? `"${fileField}"` : `"${valueField}"`} column (expected "${fileField},${valueField}")`,
      file,
      header.line,
    );
  return records.map((r) => {
    if (r.cells.length !== header.cells.length)
      throw new UserError(`${file}:${r.line}: ${r.cells.length} fields, the header has ${header.cells.length}`, file, r.line);
    return { file: r.cells[fileCol], value: r.cells[valueCol], line: r.line };
  });
}

/**
 * Parses a labels file's text. CSV needs a header row naming the file and value columns; JSONL holds one object per
 * line. Sample files are relative to the labels file's folder; each may appear once. Class labels are indices when
 * every value is a whole number (a JSON number or a CSV cell of digits), names otherwise; names map to their index in
 * `classes`, or in the sorted list of the file's names (code-point order). Mask paths are resolved against the labels
 * file's folder. Texts are kept verbatim (no trimming).
 */
export function parseLabels(text: string, file: string, kind: LabelKind, opts: LabelsOptions = {}): LabelsTable {
  const fileField = opts.fileField ?? "file";
  const valueField = opts.valueField ?? DEFAULT_VALUE_FIELD[kind];
  const raw = readRows(text, file, fileField, valueField);
  const dir = path.dirname(file);
  for (const r of raw) {
    if (typeof r.file !== "string" || r.file === "") throw new UserError(`${file}:${r.line}: no sample file in "${fileField}"`, file, r.line);
    const ok = kind === "class" ? typeof r.value === "string" || typeof r.value === "number" : typeof r.value === "string";
    if (!ok || r.value === "")
      throw new UserError(
        `${file}:${r.line}: "${valueField}" must be ${kind === "class" ? "a class index or name" : kind === "text" ? "a string" : "a mask path"}`,
        file,
        r.line,
      );
  }
  let classes: readonly string[] | undefined;
  let classOf: ((v: unknown, line: number) => number) | undefined;
  if (kind === "class") {
    const isIndex = (v: unknown): boolean => (typeof v === "number" ? Number.isInteger(v) && v >= 0 : /^\d+$/.test(v as string));
    if (raw.every((r) => isIndex(r.value))) classOf = (v) => Number(v);
    else {
      classes = opts.classes ?? [...new Set(raw.map((r) => String(r.value)))].sort();
      const index = new Map(classes.map((c, i) => [c, i]));
      classOf = (v, line) => {
        const i = index.get(String(v));
        if (i === undefined) throw new UserError(`${file}:${line}: class "${String(v)}" is not one of the classes (${classes!.join(", ")})`, file, line);
        return i;
      };
    }
  }
  const rows = new Map<string, LabelRow>();
  for (const r of raw) {
    const key = sampleKey(r.file as string);
    const previous = rows.get(key);
    if (previous) throw new UserError(`${file}:${r.line}: "${key}" already has a label on line ${previous.line}`, file, r.line);
    const value = kind === "class" ? classOf!(r.value, r.line) : kind === "mask" ? path.resolve(dir, r.value as string) : (r.value as string);
    rows.set(key, { key, value, line: r.line });
  }
  if (rows.size === 0) throw new UserError(`${file}: the labels file has no rows`, file);
  return classes ? { file, kind, rows, classes } : { file, kind, rows };
}

/** Reads and parses a labels file (see parseLabels). */
export async function readLabels(file: string, kind: LabelKind, opts: LabelsOptions = {}): Promise<LabelsTable> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new UserError(`${file}: cannot read the labels file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
  return parseLabels(text, file, kind, opts);
}

/**
 * The label of each sample file (absolute paths, in evaluation order). Every sample needs a row, and every row must
 * name a sample: a missing label or a row for a file that is not in the data is an error, never a silent skip.
 */
export function labelsFor<V extends number | string>(table: LabelsTable, samples: readonly string[]): V[] {
  const dir = path.dirname(table.file);
  const keys = samples.map((s) => sampleKey(path.relative(dir, s)));
  const known = new Set(keys);
  for (const row of table.rows.values()) {
    if (!known.has(row.key))
      throw new UserError(`${table.file}:${row.line}: "${row.key}" is not one of the ${samples.length} sample files of the dataset`, table.file, row.line);
  }
  return keys.map((k, i) => {
    const row = table.rows.get(k);
    if (!row) throw new UserError(`${table.file}: no label for ${samples[i]} (expected a row for "${k}")`, table.file);
    return row.value as V;
  });
}
