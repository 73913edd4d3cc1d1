// Persists folders across workflow runs with @actions/cache (immutable keys: restore by prefix, save under a new key).
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import * as actionsCache from "@actions/cache";
import { OptionalStepError } from "../errors.js";

/** The part of @actions/cache QuantGate uses; tests inject a folder-backed fake. */
export interface CacheClient {
  available(): boolean;
  restore(paths: string[], primaryKey: string, restoreKeys: string[]): Promise<string | undefined>;
  save(paths: string[], key: string): Promise<void>;
}

export const actionsCacheClient: CacheClient = {
  available: () => actionsCache.isFeatureAvailable(),
  restore: (paths, key, restoreKeys) => actionsCache.restoreCache(paths, key, restoreKeys),
  save: async (paths, key) => {
    await actionsCache.saveCache(paths, key);
  },
};

export class CacheServiceError extends OptionalStepError {
  constructor(message: string) {
    super(message);
    // OptionalStepError's name is a literal type; the subclass still names itself in logs.
    Object.defineProperty(this, "name", { value: "CacheServiceError" });
  }
}

/** sha256 over files (missing files count as empty) and strings, for a folder's primary key. */
export async function hashInputs(files: readonly string[], extra: readonly string[]): Promise<string> {
  const h = createHash("sha256");
  for (const f of files) {
    h.update(f);
    try {
      h.update(await readFile(f));
    } catch {
      h.update("<missing>");
    }
  }
  for (const s of extra) h.update(`\0${s}`);
  return h.digest("hex").slice(0, 32);
}

export interface FolderCache {
  readonly primaryKey: string;
  readonly restoredKey: string | undefined;
  readonly exactHit: boolean;
}

/** Restores `folder` from the newest entry under `prefix` (exact key first). */
export async function restoreFolder(client: CacheClient, folder: string, prefix: string, inputsHash: string): Promise<FolderCache> {
  const primaryKey = `${prefix}${inputsHash}`;
  if (!client.available()) throw new CacheServiceError("the cache service is not available on this runner");
  try {
    const restoredKey = await client.restore([folder], primaryKey, [prefix]);
    return { primaryKey, restoredKey, exactHit: restoredKey === primaryKey };
  } catch (err) {
    throw new CacheServiceError(`restoring ${folder} from the cache failed: ${(err as Error).message}`);
  }
}

/** Saves `folder` under the primary key unless that exact key was restored (keys are immutable). */
export async function saveFolder(client: CacheClient, folder: string, state: FolderCache): Promise<boolean> {
  if (state.exactHit) return false;
  try {
    await client.save([folder], state.primaryKey);
    return true;
  } catch (err) {
    throw new CacheServiceError(`saving ${folder} to the cache failed: ${(err as Error).message}`);
  }
}
