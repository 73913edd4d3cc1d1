// Task metrics people expect (CER/WER, IoU/Dice, decisions from scores, recall@k): pure functions returning metric records.
export { characterErrorRate, codePoints, editCounts, errorRate, levenshtein, textErrorMetrics, wordErrorRate, wordTokens } from "./edit-distance.js";
export { argmaxFrames, ctcClassesToText, ctcCollapse, ctcGreedyDecode, idsToText, parseDictionary } from "./ctc.js";
export { maskCounts, maskFromOutput, pooledIouDice, sampleIouDice, segmentationMetrics, type Mask, type MaskCounts, type MaskSpec } from "./segmentation.js";
export { decisionMetrics, hasSingleClass, isScalarPerSample, scalarOutputError, type DecisionOptions } from "./decisions.js";
export { nearestNeighbours, recallAtK } from "./retrieval.js";
