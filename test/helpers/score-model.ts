// A real score model for the decision metrics: the cnn-classifier example with two outputs added, the softmax
// probability of class 0 ("circle") as one score per image, [batch, 1], and the hidden layer before the last Gemm
// as an embedding, [batch, hidden]. Built from the committed example, not trained anew.
import { readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { DataType, loadModel, makeAttribute, makeNode, makeTensor, makeValueInfo, serializeModel } from "../../src/onnx/model.js";
import { REPO_ROOT } from "./action.js";

export const CNN = path.join(REPO_ROOT, "examples", "cnn-classifier");

/** Writes `score.onnx` into dir (outputs logits, score, embedding); returns its path. */
export async function writeScoreModel(dir: string): Promise<string> {
  const { proto } = await loadModel(path.join(CNN, "model.onnx"));
  const g = proto.graph!;
  const last = g.node.find((n) => n.opType === "Gemm" && n.output[0] === "logits");
  if (!last) throw new Error("the cnn-classifier example has no Gemm producing logits");
  const embedding = last.input[0]!;
  g.initializer.push(
    makeTensor("score.starts", DataType.INT64, [1], BigInt64Array.of(0n)),
    makeTensor("score.ends", DataType.INT64, [1], BigInt64Array.of(1n)),
    makeTensor("score.axes", DataType.INT64, [1], BigInt64Array.of(1n)),
  );
  g.node.push(
    makeNode("Softmax", ["logits"], ["probs"], [makeAttribute("axis", 1)], { name: "score_softmax" }),
    makeNode("Slice", ["probs", "score.starts", "score.ends", "score.axes"], ["score"], [], { name: "score_slice" }),
    makeNode("Identity", [embedding], ["embedding"], [], { name: "embedding_out" }),
  );
  g.output.push(makeValueInfo("score", DataType.FLOAT, ["batch", 1]), makeValueInfo("embedding", DataType.FLOAT, ["batch", "hidden"]));
  const file = path.join(dir, "score.onnx");
  await writeFile(file, serializeModel(proto));
  return file;
}

/** A labels CSV over the example's eval images: 1 for the circles (a class folder named *circle*), 0 for the other shapes. Returns its path. */
export async function writeCircleLabels(file: string, evalDir = path.join(CNN, "eval")): Promise<string> {
  const rows = ["file,label"];
  for (const cls of (await readdir(evalDir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name)) {
    for (const f of await readdir(path.join(evalDir, cls)))
      if (f.endsWith(".png")) rows.push(`${path.relative(path.dirname(file), path.join(evalDir, cls, f))},${cls.includes("circle") ? 1 : 0}`);
  }
  await writeFile(file, rows.join("\n") + "\n");
  return file;
}
