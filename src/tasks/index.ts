// The task registry: `evaluation.task` names one of these. A new task is a module exporting a `Task` plus
// one entry here and its config schema in the `evaluationSchema` union (src/config/schema.ts).
import type { Evaluation } from "../config/schema.js";
import { classificationTask } from "./classification.js";
import { fidelityTask } from "./fidelity.js";
import { languageModelingTask } from "./language-modeling.js";
import { segmentationTask } from "./segmentation.js";
import { textRecognitionTask } from "./text-recognition.js";
import type { Task } from "./types.js";

type TaskOf<N extends Evaluation["task"]> = Task<Extract<Evaluation, { task: N }>, never>;

export const TASKS: { readonly [N in Evaluation["task"]]: TaskOf<N> } = {
  "language-modeling": languageModelingTask as unknown as TaskOf<"language-modeling">,
  classification: classificationTask as unknown as TaskOf<"classification">,
  fidelity: fidelityTask as unknown as TaskOf<"fidelity">,
  "text-recognition": textRecognitionTask as unknown as TaskOf<"text-recognition">,
  segmentation: segmentationTask as unknown as TaskOf<"segmentation">,
};

/** The task module of an evaluation config, typed loosely so the pipeline never branches on the task. */
export function taskOf(evaluation: Evaluation): Task<Evaluation> {
  const task = (TASKS as Record<string, unknown>)[evaluation.task];
  if (!task) throw new Error(`no task module for evaluation.task "${evaluation.task}"`);
  return task as Task<Evaluation>;
}
