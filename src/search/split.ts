// The holdout split: the evaluation data cut into a part the search judges candidates on and a part kept
// out of every choice, used only to verify the winner. The split is written as files beside the outputs, so
// each part is an ordinary dataset of the same format and the tasks read it as they read the user's.
import { copyFile, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { resolvePath, type Config } from "../config/load.js";
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
 * labels file, as JSON Lines with the mask paths made absolute). Anything else is evaluated
 * whole, and the note says the winner's score is not independent of the search.
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
    const cut1d = await splitNpySequence(src, fraction, searchDir, holdoutDir);
    if (cut1d) {
      return {
        search: rel(config, cut1d.a),
        holdout: rel(config, cut1d.b),
        searchItems: cut1d.searchItems,
        holdoutItems: cut1d.holdoutItems,
        note: `${dataset}: the last ${cut1d.holdoutItems} of ${cut1d.searchItems + cut1d.holdoutItems} elements of the sequence held out`,
        split: true,
      };
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
    `${dataset} (${task}) is not a text file, a .jsonl file, a one-dimensional .npy sequence or an image folder with class subfolders or a labels file: not split, so the winner's score is on the data the search judged on`,
  );
}

/**
 * A one-dimensional .npy (one sequence, such as a token stream) cut into contiguous halves, the tail held out, so
 * no chunk straddles both parts. Anything else (more dimensions, Fortran order, a header it cannot read) is left
 * whole (undefined).
 */
async function splitNpySequence(
  src: string,
  fraction: number,
  searchDir: string,
  holdoutDir: string,
): Promise<{ a: string; b: string; searchItems: number; holdoutItems: number } | undefined> {
  const bytes = await readFile(src);
  if (bytes.length < 10 || bytes.toString("latin1", 0, 6) !== "\x93NUMPY") return undefined;
  const major = bytes[6]!;
  const headerLen = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLen;
  const header = bytes.toString("latin1", major === 1 ? 10 : 12, start);
  const descr = /'descr':\s*'([<>|=]?[a-zA-Z]\d+)'/.exec(header);
  const shape = /'shape':\s*\((\d+),\)/.exec(header);
  if (!descr || !shape || !/'fortran_order':\s*False/.test(header)) return undefined;
  const n = Number(shape[1]);
  const itemSize = Number(/\d+$/.exec(descr[1]!)![0]);
  if (start + n * itemSize !== bytes.length) return undefined;
  const cut = Math.max(1, Math.min(n - 1, Math.round(n * (1 - fraction))));
  if (n < 2) return undefined;
  const write = async (to: string, from: number, count: number): Promise<void> => {
    let head = `{'descr': '${descr[1]}', 'fortran_order': False, 'shape': (${count},), }`;
    const pad = 64 - ((10 + head.length + 1) % 64);
    head += " ".repeat(pad % 64) + "\n";
    const pre = Buffer.alloc(10);
    pre.write("\x93NUMPY", 0, "latin1");
    pre[6] = 1;
    pre[7] = 0;
    pre.writeUInt16LE(head.length, 8);
    await writeFile(to, Buffer.concat([pre, Buffer.from(head, "latin1"), bytes.subarray(start + from * itemSize, start + (from + count) * itemSize)]));
  };
  const a = path.join(searchDir, path.basename(src));
  const b = path.join(holdoutDir, path.basename(src));
  await write(a, 0, cut);
  await write(b, cut, n - cut);
  return { a, b, searchItems: cut, holdoutItems: n - cut };
}
