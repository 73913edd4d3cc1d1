// Runs the CLI in this process: its exit status and everything it printed to stdout and stderr.
import { vi } from "vitest";
import { main } from "../../src/cli.js";

export async function cli(args: string[]): Promise<{ status: number; out: string }> {
  let out = "";
  const capture = (chunk: string | Uint8Array): boolean => {
    out += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString();
    return true;
  };
  const err = vi.spyOn(process.stderr, "write").mockImplementation(capture);
  const std = vi.spyOn(process.stdout, "write").mockImplementation(capture);
  try {
    return { status: await main(args), out };
  } finally {
    err.mockRestore();
    std.mockRestore();
  }
}
