// The CLI's one-line kernel notice (issue 11.19) and its error messages: bad input names itself, an internal
// error says it is one and how to report it, and neither prints a stack trace by default (11.10).
import { describe, expect, it } from "vitest";
import { cliErrorMessage, kernelLine } from "../src/cli.js";
import { UserError } from "../src/errors.js";

describe("kernel notice", () => {
  it("one line when the native addon is absent", () => {
    const line = kernelLine({
      backend: "wasm",
      isa: "wasm-simd128",
      fallbackReasons: ["native: no addon at /a/kernels/build/Release/x.node, /a/dist/kernels/linux-x64/x.node, /b/x.node, /c/x.node, /d/x.node"],
    });
    expect(line).toBe("native kernels not built; using wasm (npm run build:kernels)");
  });
  it("names the native backend when it loads, and the reason when the addon exists but fails", () => {
    expect(kernelLine({ backend: "native", isa: "avx2", fallbackReasons: [] })).toBe("kernels: native (avx2)");
    expect(kernelLine({ backend: "wasm", isa: "wasm-simd128", fallbackReasons: ["native: /x.node: wrong ELF class\nmore"] })).toBe(
      "native kernels did not load (/x.node: wrong ELF class more); using wasm",
    );
  });
});

describe("error messages", () => {
  it("bad input: the message as is", () => {
    expect(cliErrorMessage(new UserError("quantgate.yml:3 recipe.format: expected one of int8"))).toBe(
      "error: quantgate.yml:3 recipe.format: expected one of int8",
    );
  });
  it("an internal error says so, says how to report it, and prints no stack trace", () => {
    const m = cliErrorMessage(new TypeError("x is undefined"), false);
    expect(m).toMatch(/^internal error \(the gate fails closed\): TypeError: x is undefined\n/);
    expect(m).toMatch(/This is a bug in QuantGate.*report it at https:\/\/github\.com\/quantgate\/quantgate\/issues/);
    expect(m).not.toMatch(/\n\s+at /);
    expect(cliErrorMessage(new TypeError("x"), true)).toMatch(/\n\s+at /);
  });
});
