// The quantizer the pipeline uses: the C kernels (native addon, else WASM) when they load, else the
// TypeScript reference, with the reasons logged. All three give byte-identical results.
import { loadKernels, type Kernels } from "../kernels/index.js";
import type { BlockwiseQuantizer } from "./index.js";

export interface KernelQuantizer {
  /** Backend and instruction set, e.g. "native (avx2)". */
  readonly name: string;
  readonly quantize: BlockwiseQuantizer;
  readonly kernels: Kernels;
}

export async function loadKernelQuantizer(log: (message: string) => void): Promise<KernelQuantizer> {
  const kernels = await loadKernels();
  for (const reason of kernels.fallbackReasons) log(`kernels: ${reason}`);
  const name = `${kernels.backend} (${kernels.isa})`;
  log(`kernels: ${name}`);
  return { name, quantize: (wT, n, k, spec, threads) => kernels.quantizeBlockwise(wT, n, k, spec, threads), kernels };
}
