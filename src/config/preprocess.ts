// The image preprocessing schema, shared by the config schema and the image tasks (a leaf module: no cycle).
import { z } from "zod";

/** Image preprocessing, applied in this order: decode -> channels -> resize -> center crop -> scale -> mean/std -> layout. */
export const imagePreprocess = z.strictObject({
  /** Resize (bilinear) to [height, width] before cropping. */
  resize: z.tuple([z.number().int().positive(), z.number().int().positive()]).optional().describe("Resize (bilinear) to [height, width] before cropping."),
  /** Center crop to [height, width]. */
  crop: z.tuple([z.number().int().positive(), z.number().int().positive()]).optional().describe("Center crop to [height, width]."),
  /** Pixel values (0..255) are multiplied by this first. */
  scale: z
    .number()
    .default(1 / 255)
    .describe("Pixel values (0..255) are multiplied by this first."),
  mean: z.array(z.number()).min(1).max(3).default([0]).describe("Subtracted per channel after scaling (one value for all channels, or one per channel)."),
  std: z
    .array(z.number().refine((v) => v !== 0, "std must not be 0"))
    .min(1)
    .max(3)
    .default([1])
    .describe("Divides per channel after the mean (one value, or one per channel)."),
  layout: z.enum(["NCHW", "NHWC"], { error: 'expected "NCHW" or "NHWC"' }).default("NCHW").describe("Tensor layout fed to the model."),
  channels: z.enum(["rgb", "bgr", "gray"], { error: 'expected "rgb", "bgr" or "gray"' }).default("rgb").describe("Channel order (or gray) fed to the model."),
});
