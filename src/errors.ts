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
