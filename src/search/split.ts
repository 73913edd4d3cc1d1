// The holdout split: the evaluation data cut into a part the search judges candidates on and a part kept
// out of every choice, used only to verify the winner. The split is written as files beside the outputs, so
// each part is an ordinary dataset of the same format and the tasks read it as they read the user's.
import { copyFile, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { resolvePath, type Config } from "../config/load.js";
import zlib from "node:zlib";
import yauzl from "yauzl";
import { readLabels } from "../data/labels.js";

export interface DataSplit {
  /** Dataset path (relative to the config) the search evaluates candidates on. */
  readonly search: string;
  /** Dataset path of the holdout part; the same as `search` when the data could not be split (see `note`). */
  readonly holdout: string;
  readonly searchItems: number;
  readonly holdoutItems: number;
  /** What was split and how, or why it was not. */
  readonly note: string;
  readonly split: boolean;
  /** For image folders labelled by a labels file: the labels file of each part (relative to the config). */
  readonly searchLabels?: string;
  readonly holdoutLabels?: string;
}

const IMAGE = /\.(png|jpe?g)$/i;

/** Every k-th item goes to the holdout, so both parts cover the whole file or folder (k from the fraction). */
function pick<T>(items: readonly T[], fraction: number): { search: T[]; holdout: T[] } {
  const search: T[] = [];
  const holdout: T[] = [];
  const want = Math.round(items.length * fraction);
  items.forEach((item, i) => {
    // Item i is held out when the running share of held-out items falls behind the fraction.
    const due = Math.floor(((i + 1) * want) / items.length) > holdout.length;
    (due ? holdout : search).push(item);
  });
  return { search, holdout };
}

function rel(config: Config, abs: string): string {
  return path.relative(config.baseDir, abs) || ".";
}

/**
 * Splits `evaluation.dataset` by `fraction` into `<dir>/search` and `<dir>/holdout`. Supported: text files
 * (language modeling: contiguous halves by line, so no window straddles both), JSON Lines (every k-th row),
 * image folders with one subfolder per class (every k-th file of each class), and image folders labelled by
 * `evaluation.labels` for text recognition and segmentation (every k-th labelled image; each part gets its own
 * labels file, as JSON Lines with the mask paths made absolute), .npy and .npz arrays along their first axis
 * (samples every k-th; a one-dimensional .npy is one sequence, cut into contiguous parts) and folders of WAV files
 * (every k-th file). Anything else is evaluated whole, and the note says the winner's score is not independent
 * of the search.
 */
export async function splitEvaluation(config: Config, fraction: number, dir: string): Promise<DataSplit> {
  const dataset = config.evaluation.dataset;
  const whole = (note: string): DataSplit => ({ search: dataset, holdout: dataset, searchItems: 0, holdoutItems: 0, note, split: false });
  if (fraction <= 0) return whole("search.holdout is 0: the winner is verified on the data the search judged on");
  const src = resolvePath(config, dataset);
  const info = await stat(src).catch(() => undefined);
  if (!info) return whole(`${dataset} not found: not split`);
  const searchDir = path.join(dir, "search");
  const holdoutDir = path.join(dir, "holdout");
  await mkdir(searchDir, { recursive: true });
  await mkdir(holdoutDir, { recursive: true });
  const task: string = config.evaluation.task;
  if (info.isFile() && (/\.txt$/i.test(src) || task === "language-modeling")) {
    const lines = (await readFile(src, "utf8")).split("\n");
    const cut = Math.max(1, Math.min(lines.length - 1, Math.round(lines.length * (1 - fraction))));
    const a = path.join(searchDir, path.basename(src));
    const b = path.join(holdoutDir, path.basename(src));
    await writeFile(a, lines.slice(0, cut).join("\n") + "\n");
    await writeFile(b, lines.slice(cut).join("\n"));
    return {
      search: rel(config, a),
      holdout: rel(config, b),
      searchItems: cut,
      holdoutItems: lines.length - cut,
      note: `${dataset}: the last ${lines.length - cut} of ${lines.length} lines held out`,
      split: true,
    };
  }
  if (info.isFile() && /\.jsonl$/i.test(src)) {
    const rows = (await readFile(src, "utf8")).split("\n").filter((l) => l.trim() !== "");
    const { search, holdout } = pick(rows, fraction);
    if (search.length === 0 || holdout.length === 0) return whole(`${dataset}: too few rows (${rows.length}) to hold some out`);
    const a = path.join(searchDir, path.basename(src));
    const b = path.join(holdoutDir, path.basename(src));
    await writeFile(a, search.join("\n") + "\n");
    await writeFile(b, holdout.join("\n") + "\n");
    return {
      search: rel(config, a),
      holdout: rel(config, b),
      searchItems: search.length,
      holdoutItems: holdout.length,
      note: `${dataset}: ${holdout.length} of ${rows.length} rows held out`,
      split: true,
    };
  }
  if (info.isDirectory() && task !== "segmentation" && task !== "text-recognition") {
    const entries = await readdir(src, { withFileTypes: true });
    const classes = entries.filter((e) => e.isDirectory()).map((e) => e.name);
    if (classes.length > 0 && entries.every((e) => e.isDirectory() || !IMAGE.test(e.name))) {
      let nSearch = 0;
      let nHoldout = 0;
      for (const cls of classes.sort()) {
        const files = (await readdir(path.join(src, cls))).filter((f) => IMAGE.test(f)).sort();
        const { search, holdout } = pick(files, fraction);
        await mkdir(path.join(searchDir, cls), { recursive: true });
        await mkdir(path.join(holdoutDir, cls), { recursive: true });
        for (const f of search) await copyFile(path.join(src, cls, f), path.join(searchDir, cls, f));
        for (const f of holdout) await copyFile(path.join(src, cls, f), path.join(holdoutDir, cls, f));
        nSearch += search.length;
        nHoldout += holdout.length;
      }
      if (nSearch > 0 && nHoldout > 0) {
        return {
          search: rel(config, searchDir),
          holdout: rel(config, holdoutDir),
          searchItems: nSearch,
          holdoutItems: nHoldout,
          note: `${dataset}: ${nHoldout} of ${nSearch + nHoldout} images held out, every class represented in both parts`,
          split: true,
        };
      }
    }
  }
  if (info.isFile() && /\.npy$/i.test(src)) {
    const labelField = (config.evaluation as { label_field?: string }).label_field;
    const cut = await splitNpy(src, fraction, labelField, searchDir, holdoutDir);
    if (cut) {
      const total = cut.searchItems + cut.holdoutItems;
      return {
        search: rel(config, cut.a),
        holdout: rel(config, cut.b),
        searchItems: cut.searchItems,
        holdoutItems: cut.holdoutItems,
        note: cut.oneSequence
          ? `${dataset}: the last ${cut.holdoutItems} of ${total} elements of the sequence held out`
          : `${dataset}: ${cut.holdoutItems} of ${total} samples (first axis) held out${labelField?.endsWith(".npy") ? `, with their labels (${labelField})` : ""}`,
        split: true,
      };
    }
  }
  if (info.isFile() && /\.npz$/i.test(src)) {
    const cut = await splitNpz(src, fraction, searchDir, holdoutDir);
    if (cut) {
      return {
        search: rel(config, cut.a),
        holdout: rel(config, cut.b),
        searchItems: cut.searchItems,
        holdoutItems: cut.holdoutItems,
        note: `${dataset}: ${cut.holdoutItems} of ${cut.searchItems + cut.holdoutItems} samples (first axis of every array) held out`,
        split: true,
      };
    }
  }
  if (info.isDirectory() && task !== "segmentation" && task !== "text-recognition") {
    // A folder of WAV files (fidelity on audio): every k-th file.
    const files = (await readdir(src)).filter((f) => /\.wav$/i.test(f)).sort();
    if (files.length >= 2) {
      const { search, holdout } = pick(files, fraction);
      if (search.length > 0 && holdout.length > 0) {
        for (const f of search) await copyFile(path.join(src, f), path.join(searchDir, f));
        for (const f of holdout) await copyFile(path.join(src, f), path.join(holdoutDir, f));
        return {
          search: rel(config, searchDir),
          holdout: rel(config, holdoutDir),
          searchItems: search.length,
          holdoutItems: holdout.length,
          note: `${dataset}: ${holdout.length} of ${files.length} WAV files held out`,
          split: true,
        };
      }
    }
  }
  if (info.isDirectory() && (task === "segmentation" || task === "text-recognition")) {
    const ev = config.evaluation as { labels?: string; labels_fields?: Record<string, string> };
    if (ev.labels) {
      const kind = task === "segmentation" ? "mask" : "text";
      const fileField = ev.labels_fields?.file ?? "file";
      const valueField = ev.labels_fields?.[kind] ?? kind;
      const table = await readLabels(resolvePath(config, ev.labels), kind, { fileField, valueField });
      const labelsDir = path.dirname(table.file);
      const files = (await readdir(src)).filter((f) => IMAGE.test(f)).sort();
      // Only images in the folder itself whose row names them the same way, so the copies keep their keys.
      const labelled = files.filter((f) => table.rows.has(path.relative(labelsDir, path.join(src, f)).split(path.sep).join("/")));
      if (labelled.length === files.length && files.length === table.rows.size) {
        const { search, holdout } = pick(files, fraction);
        if (search.length > 0 && holdout.length > 0) {
          const write = async (part: readonly string[], to: string): Promise<string> => {
            const lines: string[] = [];
            for (const f of part) {
              await copyFile(path.join(src, f), path.join(to, f));
              const row = table.rows.get(path.relative(labelsDir, path.join(src, f)).split(path.sep).join("/"))!;
              lines.push(JSON.stringify({ [fileField]: f, [valueField]: row.value }));
            }
            const labels = path.join(to, "labels.jsonl");
            await writeFile(labels, lines.join("\n") + "\n");
            return labels;
          };
          const a = await write(search, searchDir);
          const b = await write(holdout, holdoutDir);
          return {
            search: rel(config, searchDir),
            holdout: rel(config, holdoutDir),
            searchItems: search.length,
            holdoutItems: holdout.length,
            note: `${dataset}: ${holdout.length} of ${files.length} labelled images held out`,
            split: true,
            searchLabels: rel(config, a),
            holdoutLabels: rel(config, b),
          };
        }
      }
    }
  }
  return whole(
    `${dataset} (${task}) is not a text file, a .jsonl file, a .npy or .npz split along its first axis, a folder of WAV files or an image folder with class subfolders or a labels file: not split, so the winner's score is on the data the search judged on`,
  );
}

/** Where a C-order .npy of a fixed-size numeric dtype keeps its shape and data; undefined for anything else. */
interface NpyLayout {
  readonly descr: string;
  readonly shape: number[];
  readonly dataStart: number;
  readonly itemSize: number;
}

function npyLayout(bytes: Uint8Array): NpyLayout | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 10 || b.toString("latin1", 0, 6) !== "\x93NUMPY") return undefined;
  const major = b[6]!;
  const headerLen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const dataStart = (major === 1 ? 10 : 12) + headerLen;
  const header = b.toString("latin1", major === 1 ? 10 : 12, dataStart);
  const descr = /'descr':\s*'([<>|=]?[fiub]\d+)'/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined || !/'fortran_order':\s*False/.test(header)) return undefined;
  const shape = shapeText
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "")
    .map(Number);
  if (shape.length === 0 || shape.some((d) => !Number.isInteger(d) || d < 0)) return undefined;
  const itemSize = Number(/\d+$/.exec(descr)![0]);
  if (dataStart + shape.reduce((a, d) => a * d, 1) * itemSize !== b.length) return undefined;
  return { descr, shape, dataStart, itemSize };
}

/** A .npy file (format 1.0, header padded to 64 bytes) of the given dtype, shape and row-major data. */
function npyBytes(descr: string, shape: readonly number[], data: Uint8Array): Buffer {
  let head = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  head += " ".repeat((64 - ((10 + head.length + 1) % 64)) % 64) + "\n";
  const pre = Buffer.alloc(10);
  pre.write("\x93NUMPY", 0, "latin1");
  pre[6] = 1;
  pre.writeUInt16LE(head.length, 8);
  return Buffer.concat([pre, Buffer.from(head, "latin1"), data]);
}

/** The rows (along the first axis) of a .npy at the given indices, as a new .npy. */
function npyRows(bytes: Uint8Array, layout: NpyLayout, rows: readonly number[]): Buffer {
  const rowBytes = layout.shape.slice(1).reduce((a, d) => a * d, 1) * layout.itemSize;
  const data = Buffer.concat(rows.map((r) => bytes.subarray(layout.dataStart + r * rowBytes, layout.dataStart + (r + 1) * rowBytes)));
  return npyBytes(layout.descr, [rows.length, ...layout.shape.slice(1)], data);
}

/** Sample indices 0..n-1 split every k-th (pick), or the tail held out when `contiguous` (one sequence). */
function rowSplit(n: number, fraction: number, contiguous: boolean): { search: number[]; holdout: number[] } {
  const all = Array.from({ length: n }, (_, i) => i);
  if (!contiguous) return pick(all, fraction);
  const cut = Math.max(1, Math.min(n - 1, Math.round(n * (1 - fraction))));
  return { search: all.slice(0, cut), holdout: all.slice(cut) };
}

/**
 * A .npy split along its first axis: a one-dimensional array (a sequence such as a token stream) into contiguous
 * parts, the tail held out, so no chunk straddles both; more dimensions (axis 0 indexes samples) every k-th sample.
 * A labels .npy named by evaluation.label_field beside it is split with the same rows. Anything else (Fortran
 * order, a dtype or header it cannot read, labels elsewhere or of another length) is left whole (undefined).
 */
async function splitNpy(
  src: string,
  fraction: number,
  labelField: string | undefined,
  searchDir: string,
  holdoutDir: string,
): Promise<{ a: string; b: string; searchItems: number; holdoutItems: number; oneSequence: boolean } | undefined> {
  const bytes = await readFile(src);
  const layout = npyLayout(bytes);
  if (!layout || layout.shape[0]! < 2) return undefined;
  const n = layout.shape[0]!;
  let labels: { bytes: Buffer; layout: NpyLayout; name: string } | undefined;
  if (labelField?.endsWith(".npy")) {
    // Only a labels file beside the data: each part's copy then sits at the same relative path.
    if (path.basename(labelField) !== labelField) return undefined;
    const lb = await readFile(path.join(path.dirname(src), labelField)).catch(() => undefined);
    const ll = lb && npyLayout(lb);
    if (!lb || !ll || ll.shape[0] !== n) return undefined;
    labels = { bytes: lb, layout: ll, name: labelField };
  }
  const oneSequence = layout.shape.length === 1;
  const { search, holdout } = rowSplit(n, fraction, oneSequence);
  if (search.length === 0 || holdout.length === 0) return undefined;
  const a = path.join(searchDir, path.basename(src));
  const b = path.join(holdoutDir, path.basename(src));
  await writeFile(a, npyRows(bytes, layout, search));
  await writeFile(b, npyRows(bytes, layout, holdout));
  if (labels) {
    await writeFile(path.join(searchDir, labels.name), npyRows(labels.bytes, labels.layout, search));
    await writeFile(path.join(holdoutDir, labels.name), npyRows(labels.bytes, labels.layout, holdout));
  }
  return { a, b, searchItems: search.length, holdoutItems: holdout.length, oneSequence };
}

/** The members of a zip archive (a .npz) by name, as stored bytes. */
async function zipMembers(bytes: Buffer): Promise<Map<string, Buffer>> {
  const zip = await yauzl.fromBufferPromise(bytes, { lazyEntries: true, validateEntrySizes: true, strictFileNames: false });
  const out = new Map<string, Buffer>();
  try {
    for (;;) {
      const entry = await new Promise<yauzl.Entry | undefined>((resolve, reject) => {
        const cleanup = (): void => void (zip.removeAllListeners("entry"), zip.removeAllListeners("end"), zip.removeAllListeners("error"));
        zip.once("entry", (e: yauzl.Entry) => (cleanup(), resolve(e)));
        zip.once("end", () => (cleanup(), resolve(undefined)));
        zip.once("error", (e: Error) => (cleanup(), reject(e)));
        zip.readEntry();
      });
      if (!entry) break;
      if (entry.fileName.endsWith("/")) continue;
      const chunks: Buffer[] = [];
      for await (const chunk of await zip.openReadStreamPromise(entry)) chunks.push(chunk as Buffer);
      out.set(entry.fileName, Buffer.concat(chunks));
    }
  } finally {
    zip.close();
  }
  return out;
}

/** A zip archive of stored (uncompressed) members, as numpy's np.savez writes. */
function zipStored(members: ReadonlyMap<string, Buffer>): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of members) {
    const nameBytes = Buffer.from(name, "utf8");
    const crc = zlib.crc32(data) >>> 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const dir = Buffer.alloc(46);
    dir.writeUInt32LE(0x02014b50, 0);
    dir.writeUInt16LE(20, 4);
    dir.writeUInt16LE(20, 6);
    dir.writeUInt16LE(0x0800, 8);
    dir.writeUInt32LE(crc, 16);
    dir.writeUInt32LE(data.length, 20);
    dir.writeUInt32LE(data.length, 24);
    dir.writeUInt16LE(nameBytes.length, 28);
    dir.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, data);
    central.push(dir, nameBytes);
    offset += 30 + nameBytes.length + data.length;
  }
  const centralBytes = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.size, 8);
  end.writeUInt16LE(members.size, 10);
  end.writeUInt32LE(centralBytes.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, centralBytes, end]);
}

/**
 * A .npz split every k-th sample along the first axis of its arrays, which must all have the same first dimension
 * (inputs and labels, one row per sample); anything else is left whole (undefined).
 */
async function splitNpz(
  src: string,
  fraction: number,
  searchDir: string,
  holdoutDir: string,
): Promise<{ a: string; b: string; searchItems: number; holdoutItems: number } | undefined> {
  const members = await zipMembers(await readFile(src)).catch(() => undefined);
  if (!members || members.size === 0) return undefined;
  const arrays = [...members].map(([name, bytes]) => ({ name, bytes, layout: name.endsWith(".npy") ? npyLayout(bytes) : undefined }));
  const n = arrays[0]?.layout?.shape[0];
  if (n === undefined || n < 2 || arrays.some((x) => !x.layout || x.layout.shape[0] !== n)) return undefined;
  const { search, holdout } = pick(
    Array.from({ length: n }, (_, i) => i),
    fraction,
  );
  if (search.length === 0 || holdout.length === 0) return undefined;
  const part = (rows: readonly number[]): Buffer => zipStored(new Map(arrays.map((x) => [x.name, npyRows(x.bytes, x.layout!, rows)])));
  const a = path.join(searchDir, path.basename(src));
  const b = path.join(holdoutDir, path.basename(src));
  await writeFile(a, part(search));
  await writeFile(b, part(holdout));
  return { a, b, searchItems: search.length, holdoutItems: holdout.length };
}
