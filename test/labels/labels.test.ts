import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { labelsFor, parseCsv, parseLabels, readLabels } from "../../src/data/labels.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const at = (name: string): string => path.join(HERE, name);

describe("labels files", () => {
  it("reads CSV texts verbatim: quoted commas, doubled quotes, a line break in quotes, CRLF, a BOM, extra columns", async () => {
    const t = await readLabels(at("texts.csv"), "text");
    const samples = ["img/001.png", "img/002.png", "img/003.png", "img/004.png"].map((f) => at(f));
    expect(labelsFor<string>(t, samples)).toEqual(["hello, world", 'she said "yes"', "two\nlines", " leading space "]);
    // Each row remembers the line it starts on (the multi-line field pushes the next row to line 6).
    expect([...t.rows.values()].map((r) => r.line)).toEqual([2, 3, 4, 6]);
  });

  it("maps class names to indices in sorted order, or in the order the config gives", async () => {
    const sorted = await readLabels(at("classes.jsonl"), "class");
    expect(sorted.classes).toEqual(["ant", "cat", "dog"]);
    const files = ["a/cat1.png", "a/dog1.png", "b/ant1.png", "b/cat2.png"].map((f) => at(f));
    expect(labelsFor<number>(sorted, files)).toEqual([1, 2, 0, 1]);
    const given = await readLabels(at("classes.jsonl"), "class", { classes: ["dog", "cat", "ant"] });
    expect(labelsFor<number>(given, files)).toEqual([1, 0, 2, 1]);
    await expect(readLabels(at("classes.jsonl"), "class", { classes: ["dog", "cat"] })).rejects.toThrow(
      /classes\.jsonl:4: class "ant" is not one of the classes \(dog, cat\)/,
    );
  });

  it("reads whole numbers as class indices, from CSV digits or JSON numbers", () => {
    const csv = parseLabels("file,label\na.png,2\nb.png,0\n", "/d/l.csv", "class");
    expect([...csv.rows.values()].map((r) => r.value)).toEqual([2, 0]);
    expect(csv.classes).toBeUndefined();
    const jsonl = parseLabels('{"file":"a.png","y":3}\n', "/d/l.jsonl", "class", { valueField: "y" });
    expect(jsonl.rows.get("a.png")!.value).toBe(3);
  });

  it("resolves mask paths against the labels file's folder", async () => {
    const t = await readLabels(at("masks.csv"), "mask");
    expect(labelsFor<string>(t, [at("x.png"), at("y.png")])).toEqual([at("masks/x.png"), path.join(path.dirname(HERE), "elsewhere/y.png")]);
  });

  it("names the file and line of every mistake", async () => {
    const cases: { file: string; kind: "class" | "text" | "mask"; expected: RegExp }[] = [
      { file: "duplicate.csv", kind: "class", expected: /duplicate\.csv:4: "a\.png" already has a label on line 2/ },
      { file: "unclosed.csv", kind: "class", expected: /unclosed\.csv:3: a quoted field is not closed/ },
      { file: "wrong-header.csv", kind: "class", expected: /wrong-header\.csv:1: the header \(path,label\) has no "file" column/ },
      { file: "extra-field.csv", kind: "class", expected: /extra-field\.csv:2: 3 fields, the header has 2/ },
      { file: "masks.csv", kind: "text", expected: /masks\.csv:1: the header \(file,mask\) has no "text" column/ },
      { file: "missing.csv", kind: "text", expected: /missing\.csv: cannot read the labels file \(ENOENT\)/ },
    ];
    for (const c of cases) await expect(readLabels(at(c.file), c.kind), c.file).rejects.toThrow(c.expected);
    expect(() => parseLabels('{"file":"a.png"}\n', "/d/l.jsonl", "text")).toThrow(/l\.jsonl:1: "text" must be a string/);
    expect(() => parseLabels('{"file":"a.png","text":"x"}\nnot json\n', "/d/l.jsonl", "text")).toThrow(/l\.jsonl:2: not valid JSON/);
    expect(() => parseLabels("file,label\na.png,1\n", "/d/l.txt", "class")).toThrow(/l\.txt: a labels file is \.csv \(with a header row\) or \.jsonl/);
    expect(() => parseCsv('a,b"c\n', "x.csv")).toThrow(/x\.csv:1: a quote inside an unquoted field/);
  });

  it("refuses a sample without a label and a label without a sample: nothing is skipped silently", async () => {
    const t = await readLabels(at("masks.csv"), "mask");
    expect(() => labelsFor(t, [at("x.png")])).toThrow(/masks\.csv:3: "y\.png" is not one of the 1 sample files of the dataset/);
    expect(() => labelsFor(t, [at("x.png"), at("y.png"), at("z.png")])).toThrow(/masks\.csv: no label for .*z\.png \(expected a row for "z\.png"\)/);
  });
});
