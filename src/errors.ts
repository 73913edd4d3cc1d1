// Error classes: what the user must fix versus optional extras that went wrong.

/** Bad input (config, model, dataset): fails the gate with a message that names the file and field. */
export class UserError extends Error {
  override readonly name = "UserError";
  constructor(
    message: string,
    readonly file?: string,
    readonly line?: number,
  ) {
    super(message);
  }
}

/** An optional extra (PR comment, artifact upload) failed: a warning, the gate still decides. */
export class OptionalStepError extends Error {
  override readonly name = "OptionalStepError";
}

const ERRNO_TEXT: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  ENOENT: "no such file or folder",
  ENOTDIR: "a part of the path is not a folder",
  EISDIR: "it is a folder",
  EEXIST: "it already exists",
  EMFILE: "too many open files",
  EIO: "input/output error",
};

/** A short reason for a file-system error ("permission denied (EACCES)"), for messages that name the file. */
export function fsReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code && ERRNO_TEXT[code]) return `${ERRNO_TEXT[code]} (${code})`;
  return code ?? (err as Error)?.message ?? String(err);
}

/** An output file could not be written (permission, disk full, read-only): the user's environment, not a bug. */
export class OutputWriteError extends UserError {
  constructor(file: string, err: unknown) {
    super(`cannot write ${file}: ${fsReason(err)}`, file);
  }
}
