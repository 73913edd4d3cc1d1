// A local-folder stand-in for the workflow artifact service, behind the same calls as @actions/artifact's
// client (upload, get by name, download by id, list). Selected with QUANTGATE_ARTIFACT_DIR: tests and the
// shard benchmark run the sharded modes with no network; each artifact is a folder <dir>/<name>/.
import { createHash } from "node:crypto";
import { cp, mkdir, readdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import path from "node:path";

export interface ArtifactRecord {
  readonly id: number;
  readonly name: string;
  readonly size: number;
}

/** The subset of @actions/artifact's ArtifactClient QuantGate uses. */
export interface ArtifactClient {
  uploadArtifact(name: string, files: string[], rootDirectory: string, options?: { retentionDays?: number }): Promise<{ id?: number; size?: number }>;
  getArtifact(name: string): Promise<{ artifact: ArtifactRecord }>;
  downloadArtifact(id: number, options?: { path?: string }): Promise<{ downloadPath?: string }>;
  listArtifacts(): Promise<{ artifacts: ArtifactRecord[] }>;
}

/** The stand-in's error for a missing artifact, named like @actions/artifact's. */
export class LocalArtifactNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ArtifactNotFoundError";
  }
}

const META = ".artifact.json";

/** A stable id per name (artifact names are unique within a workflow run). */
const idOf = (name: string): number => parseInt(createHash("sha256").update(name).digest("hex").slice(0, 7), 16);

export function localArtifactClient(dir: string): ArtifactClient {
  const folder = (name: string): string => path.join(dir, encodeURIComponent(name));
  async function records(): Promise<ArtifactRecord[]> {
    const names = await readdir(dir).catch(() => [] as string[]);
    const out: ArtifactRecord[] = [];
    for (const n of names) {
      const meta = await readFile(path.join(dir, n, META), "utf8").catch(() => undefined);
      if (meta) out.push(JSON.parse(meta) as ArtifactRecord);
    }
    return out;
  }
  return {
    async uploadArtifact(name, files, rootDirectory) {
      if (!name || /[":<>|*?\\/\r\n]/.test(name)) throw new Error(`artifact name "${name}" is not valid`);
      const target = folder(name);
      if (
        await stat(target).then(
          () => true,
          () => false,
        )
      )
        throw new Error(`an artifact named "${name}" already exists in this run (409 Conflict)`);
      // Written under a temporary name and renamed: a reader never sees half an artifact.
      const tmp = `${target}.tmp-${process.pid}`;
      await mkdir(tmp, { recursive: true });
      let size = 0;
      for (const f of files) {
        const rel = path.relative(rootDirectory, f);
        if (rel.startsWith("..") || path.isAbsolute(rel)) throw new Error(`${f} is not under the root directory ${rootDirectory}`);
        await mkdir(path.dirname(path.join(tmp, rel)), { recursive: true });
        await cp(f, path.join(tmp, rel));
        size += (await stat(f)).size;
      }
      const record: ArtifactRecord = { id: idOf(name), name, size };
      await writeFile(path.join(tmp, META), JSON.stringify(record));
      await rename(tmp, target);
      return { id: record.id, size };
    },
    async getArtifact(name) {
      const meta = await readFile(path.join(folder(name), META), "utf8").catch(() => undefined);
      if (!meta) throw new LocalArtifactNotFoundError(`Artifact not found for name: ${name}`);
      return { artifact: JSON.parse(meta) as ArtifactRecord };
    },
    async downloadArtifact(id, options = {}) {
      const record = (await records()).find((r) => r.id === id);
      if (!record) throw new LocalArtifactNotFoundError(`Artifact not found for id: ${id}`);
      const dest = options.path ?? process.cwd();
      await mkdir(dest, { recursive: true });
      const src = folder(record.name);
      for (const entry of await readdir(src, { recursive: true, withFileTypes: true })) {
        if (!entry.isFile() || entry.name === META) continue;
        const from = path.join(entry.parentPath, entry.name);
        const to = path.join(dest, path.relative(src, from));
        await mkdir(path.dirname(to), { recursive: true });
        await cp(from, to);
      }
      return { downloadPath: dest };
    },
    async listArtifacts() {
      return { artifacts: await records() };
    },
  };
}
