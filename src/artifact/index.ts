// The run's files as a workflow artifact (quantized model, JSON report, lockfile, summary), uploaded
// also when the gate fails; without an artifact service it is a warning, never a gate failure.
import { existsSync } from "node:fs";
import path from "node:path";
import { DefaultArtifactClient } from "@actions/artifact";
import { OptionalStepError } from "../errors.js";
import { localArtifactClient, type ArtifactClient } from "./local.js";

export type { ArtifactClient } from "./local.js";

/** The workflow artifact service, or the local-folder stand-in when QUANTGATE_ARTIFACT_DIR is set (tests, benchmarks). */
export function artifactClient(env: NodeJS.ProcessEnv = process.env): ArtifactClient {
  const dir = env.QUANTGATE_ARTIFACT_DIR;
  return dir ? localArtifactClient(dir) : (new DefaultArtifactClient() as unknown as ArtifactClient);
}

export interface ArtifactUploader {
  upload(name: string, files: string[], rootDirectory: string, retentionDays?: number): Promise<{ id?: number; size?: number }>;
}

export class ArtifactUploadError extends OptionalStepError {
  constructor(message: string) {
    super(message);
    // OptionalStepError's name is a literal type; the subclass still names itself in logs.
    Object.defineProperty(this, "name", { value: "ArtifactUploadError" });
  }
}

export const actionsArtifactUploader: ArtifactUploader = {
  async upload(name, files, rootDirectory, retentionDays) {
    const client = artifactClient();
    return client.uploadArtifact(name, files, rootDirectory, retentionDays ? { retentionDays } : {});
  },
};

export interface ArtifactResult {
  readonly name: string;
  readonly files: string[];
  readonly id?: number;
  readonly sizeBytes?: number;
  readonly url?: string;
}

/** Artifact names allow neither these characters nor an empty name. */
export function artifactName(configId: string): string {
  return `quantgate-${configId}`.replace(/[":<>|*?\\/\r\n]+/g, "-");
}

/** The files that exist, in a stable order; the common root keeps their layout in the artifact. */
export function artifactFiles(candidates: readonly (string | undefined)[]): { files: string[]; root: string } {
  const files = [...new Set(candidates.filter((f): f is string => !!f && existsSync(f)).map((f) => path.resolve(f)))];
  if (files.length === 0) return { files, root: process.cwd() };
  let root = path.dirname(files[0]!);
  for (const f of files) while (!f.startsWith(root + path.sep)) root = path.dirname(root);
  return { files, root };
}

export async function uploadArtifact(
  uploader: ArtifactUploader,
  name: string,
  candidates: readonly (string | undefined)[],
  runUrl: string | undefined,
  retentionDays?: number,
): Promise<ArtifactResult> {
  const { files, root } = artifactFiles(candidates);
  if (files.length === 0) throw new ArtifactUploadError("no files to upload");
  try {
    const r = await uploader.upload(name, files, root, retentionDays);
    return { name, files, id: r.id, sizeBytes: r.size, url: r.id !== undefined && runUrl ? `${runUrl}/artifacts/${r.id}` : undefined };
  } catch (err) {
    throw new ArtifactUploadError(`uploading artifact "${name}" failed: ${(err as Error).message}`);
  }
}
