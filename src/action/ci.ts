// Living in CI: after the gate ran, compare with the base branch, write the report and release record,
// upload the artifact, post the pull-request comment, store history and the dashboard. Every step here
// except the regression rules is optional: it warns when it cannot run and the gate still decides.
import path from "node:path";
import { artifactName, uploadArtifact, type ArtifactResult, type ArtifactUploader } from "../artifact/index.js";
import { hashInputs, restoreFolder, saveFolder, type CacheClient, type FolderCache } from "../cache/actions.js";
import { cacheSummaryLine, WORK_CACHE_DIR, WorkCache } from "../cache/index.js";
import { resolvePath, type Config } from "../config/load.js";
import { historySchema, regressionSchema, type HistorySettings, type Limit } from "../config/schema.js";
import { DASHBOARD_FILE, renderDashboard } from "../dashboard/render.js";
import { OptionalStepError } from "../errors.js";
import type { RuleResult } from "../gate/index.js";
import { ruleAnnotations, type Annotation } from "../github/annotations.js";
import { commentMarker, createOctokit, upsertComment, type CommentResult, type Octokit } from "../github/comment.js";
import { configId, isPullRequestEvent, workspacePath, type GithubContext } from "../github/context.js";
import { renderBody, type CiReport, type CiSection } from "../github/markdown.js";
import { latestOf, recentRatioEntries, toHistoryEntry, type HistoryEntry, type HistoryFile } from "../history/entry.js";
import { evaluateRegression, MAX_BASE_RATIO_RUNS, type RegressionResult } from "../history/regression.js";
import { BranchHistoryStore, CacheHistoryStore, type HistoryStore } from "../history/store.js";
import type { GateRun } from "../pipeline.js";
import { LOCKFILE_NAME } from "../report/lockfile.js";
import { writeReport } from "../report/write.js";
import { writeFileAtomic } from "../util/atomic.js";
import { TOOL_VERSION } from "../version.js";
import type { CiInputs } from "./io.js";
import { releaseRecord, writeReleaseRecord } from "./release.js";

export interface Logger {
  info(message: string): void;
  warning(message: string): void;
}

export interface CiDeps {
  readonly log: Logger;
  readonly uploader: ArtifactUploader;
  readonly cacheClient: CacheClient;
  readonly octokit?: (token: string, apiUrl: string) => Octokit;
}

export interface CiOutcome {
  readonly report: CiReport;
  readonly body: string;
  readonly reportPath: string;
  readonly summaryPath: string;
  readonly annotations: Annotation[];
  readonly comment?: CommentResult;
  readonly artifact?: ArtifactResult;
  readonly baseCommit?: string;
  readonly historyLocation?: string;
  readonly dashboardPath?: string;
  readonly releaseRecordPath?: string;
  readonly cacheHits: string[];
}

/** History is on when the config has a `history:` block, or a `regression:` block that needs it. */
export function historySettings(config: Config): HistorySettings | undefined {
  if (config.history) return config.history.backend === "none" ? undefined : config.history;
  return config.regression ? historySchema.parse({}) : undefined;
}

/** Limits of the gate by rule, as the dashboard draws them. */
function gateLimits(config: Config): Record<string, Limit> {
  const out: Record<string, Limit> = {};
  for (const [k, v] of Object.entries(config.gate)) if (v && typeof v === "object") out[k] = v as Limit;
  return out;
}

/** Recomputes the verdict after rules were added: any error or failed rule fails. */
function withRules(report: CiReport, extra: readonly RuleResult[]): CiReport {
  const rules = [...report.gate.rules, ...extra];
  const verdict = report.gate.errors.length > 0 || rules.some((r) => r.status === "fail") ? "fail" : "pass";
  return { ...report, gate: { ...report.gate, rules, verdict }, verdict };
}

export class CiRun {
  readonly id: string;
  readonly workCache: WorkCache;
  private readonly history: HistorySettings | undefined;
  private folderCache: FolderCache | undefined;

  constructor(
    readonly ctx: GithubContext,
    readonly config: Config,
    readonly inputs: CiInputs,
    readonly deps: CiDeps,
    readonly origins: ReadonlyMap<string, string> = new Map(),
  ) {
    this.id = configId(ctx, config.configPath, config.history?.name);
    this.history = historySettings(config);
    this.workCache = new WorkCache(path.join(ctx.workspace, WORK_CACHE_DIR), { disabled: !inputs.cache });
  }

  private warn(err: unknown): void {
    this.deps.log.warning(err instanceof OptionalStepError ? err.message : `QuantGate: ${(err as Error).message}`);
  }

  /** Restores the work-cache folder persisted by earlier runs (a miss or no cache service is fine). */
  async restoreWorkCache(): Promise<void> {
    if (!this.inputs.cache) return;
    if (!this.deps.cacheClient.available()) {
      this.deps.log.info("work cache: no cache service on this runner; using the local folder only");
      return;
    }
    const files = [this.config.configPath, resolvePath(this.config, this.config.model)];
    const ev = this.config.evaluation;
    files.push(resolvePath(this.config, ev.dataset));
    if (ev.calibration) files.push(resolvePath(this.config, ev.calibration));
    const hash = await hashInputs(files, [TOOL_VERSION, process.platform, process.arch, process.version]);
    try {
      this.folderCache = await restoreFolder(this.deps.cacheClient, this.workCache.dir, `quantgate-work-${process.platform}-${this.id}-`, hash);
      this.deps.log.info(`work cache: ${this.folderCache.restoredKey ? `restored ${this.folderCache.restoredKey}` : "nothing to restore"}`);
    } catch (err) {
      this.warn(err);
    }
  }

  private async saveWorkCache(): Promise<void> {
    if (!this.folderCache) return;
    try {
      if (await saveFolder(this.deps.cacheClient, this.workCache.dir, this.folderCache)) this.deps.log.info(`work cache: saved ${this.folderCache.primaryKey}`);
    } catch (err) {
      this.warn(err);
    }
  }

  private store(branchForCache: string): HistoryStore | undefined {
    const h = this.history;
    if (!h) return undefined;
    if (h.backend === "cache") {
      return new CacheHistoryStore({
        client: this.deps.cacheClient,
        folder: path.join(this.ctx.workspace, ".quantgate", "history"),
        branch: branchForCache,
        runKey: `${this.ctx.runId || Date.now()}-${this.ctx.runAttempt}`,
      });
    }
    const remote = this.inputs.historyRemote ?? `${this.ctx.serverUrl}/${this.ctx.owner}/${this.ctx.repo}.git`;
    return new BranchHistoryStore({
      remote,
      branch: h.branch,
      dir: h.path,
      token: this.inputs.githubToken,
      log: (m) => this.deps.log.info(m),
    });
  }

  private entry(report: CiReport, branch: string | undefined): HistoryEntry {
    return toHistoryEntry(
      report,
      { config: this.id, commit: this.ctx.sha, branch, runId: this.ctx.runId, runUrl: this.ctx.runUrl, message: this.ctx.message },
      gateLimits(this.config),
    );
  }

  /** Base-branch comparison for pull requests: regression rules added to the gate. */
  private async compareWithBase(report: CiReport): Promise<{ report: CiReport; section: Partial<CiSection> }> {
    const pr = this.ctx.pullRequest;
    if (!isPullRequestEvent(this.ctx) || !pr) return { report, section: {} };
    const settings = this.config.regression ?? regressionSchema.parse({});
    const store = this.store(pr.baseRef);
    const missing = (why: string): { report: CiReport; section: Partial<CiSection> } => {
      if (!settings.require_base) return { report, section: { baseBranch: pr.baseRef, baseMissing: why } };
      const rule: RuleResult = {
        rule: "regression.require_base",
        label: "Base-branch history",
        unit: "ratio",
        direction: "min",
        observed: undefined,
        limit: { fail: 1 },
        status: "fail",
        message: `regression.require_base: ${why}`,
      };
      return { report: withRules(report, [rule]), section: { baseBranch: pr.baseRef, baseMissing: why } };
    };
    if (!store) return missing('no history is configured (add a "history:" or "regression:" block)');
    let base: HistoryEntry | undefined;
    let baseFile: HistoryFile | undefined;
    try {
      baseFile = await store.read(this.id, pr.baseRef);
      base = latestOf(baseFile, pr.baseRef);
    } catch (err) {
      this.warn(new OptionalStepError(`reading the history of ${pr.baseRef} from ${store.description} failed: ${(err as Error).message}`));
      return missing(`the history of "${pr.baseRef}" could not be read (${store.description})`);
    }
    if (!base) return missing(`no history entry of "${pr.baseRef}" for "${this.id}" yet (${store.description}); it is written by runs on "${pr.baseRef}"`);
    const current = this.entry(report, pr.headRef);
    // Recent base runs of the same float model: their latency ratios give the run-to-run spread.
    const recent = recentRatioEntries(baseFile, pr.baseRef, current.hashes.model, MAX_BASE_RATIO_RUNS);
    const regression: RegressionResult = evaluateRegression(current, base, settings, recent.length > 0 ? recent : [base]);
    return { report: withRules(report, regression.rules), section: { baseBranch: pr.baseRef, regression } };
  }

  /** Everything after runGate; returns what main sets as outputs. */
  async finish(gateRun: GateRun, extra?: { readonly markdown: string; readonly files: readonly string[] }): Promise<CiOutcome> {
    const cmp = await this.compareWithBase(gateRun.report);
    const section: { -readonly [K in keyof CiSection]: CiSection[K] } = { mode: this.inputs.mode, runUrl: this.ctx.runUrl, ...cmp.section };
    const cache = this.workCache.summary();
    if (cache.events.length > 0) section.cacheLine = cacheSummaryLine(cache);
    let report: CiReport = { ...cmp.report, ci: section };

    let releaseRecordPath: string | undefined;
    if (this.inputs.mode === "release") {
      const name = this.config.release?.record ?? "quantgate-release.json";
      releaseRecordPath = path.resolve(gateRun.outputDir, name);
      section.releaseRecord = path.basename(releaseRecordPath);
    }
    // First write: the artifact carries the report and summary as they stand before the upload.
    let written = await writeReport({ ...gateRun, report });
    if (releaseRecordPath) {
      const record = releaseRecord(report, {
        config: this.id,
        commit: this.ctx.sha,
        ref: this.ctx.branch,
        runUrl: this.ctx.runUrl,
        baseCommit: section.regression?.base.commit,
      });
      releaseRecordPath = await writeReleaseRecord(gateRun.outputDir, path.relative(gateRun.outputDir, releaseRecordPath), record);
    }

    let artifact: ArtifactResult | undefined;
    if (this.inputs.artifact) {
      const files = [
        gateRun.quantizedModelPath,
        written.reportPath,
        path.join(gateRun.outputDir, LOCKFILE_NAME),
        written.summaryPath,
        releaseRecordPath,
        ...(extra?.files ?? []),
      ];
      try {
        artifact = await uploadArtifact(this.deps.uploader, artifactName(this.id), files, this.ctx.runUrl, this.inputs.artifactRetentionDays);
        section.artifact = { name: artifact.name, url: artifact.url, files: artifact.files.length };
        this.deps.log.info(`artifact ${artifact.name}: ${artifact.files.length} files uploaded${artifact.url ? ` (${artifact.url})` : ""}`);
      } catch (err) {
        this.warn(err);
        section.artifactNote = `artifact not uploaded (the files are in "${workspacePath(this.ctx, gateRun.outputDir)}")`;
      }
    }

    // History and dashboard: runs on the stored branches (default branch unless listed) append an entry.
    let historyLocation: string | undefined;
    let dashboardPath: string | undefined;
    const storeBranches = this.history?.branches.length ? this.history.branches : this.ctx.defaultBranch ? [this.ctx.defaultBranch] : [];
    const branch = this.ctx.branch;
    if (this.history && !isPullRequestEvent(this.ctx) && branch && storeBranches.includes(branch)) {
      const store = this.store(branch)!;
      const repoUrl = this.ctx.owner ? `${this.ctx.serverUrl}/${this.ctx.owner}/${this.ctx.repo}` : undefined;
      const dashboard = this.history.dashboard;
      try {
        const r = await store.append(this.entry(report, branch), this.history.max_entries, (all): Record<string, string> =>
          dashboard ? { [DASHBOARD_FILE]: renderDashboard(all, { repoUrl, title: `QuantGate: ${this.ctx.owner}/${this.ctx.repo}` }) } : {},
        );
        historyLocation = r.location;
        section.historyNote = `history: ${r.file.entries.length} entries in ${r.location}${r.attempts > 1 ? ` (pushed after ${r.attempts} attempts)` : ""}`;
        if (dashboard) {
          dashboardPath = path.join(gateRun.outputDir, "dashboard.html");
          await writeFileAtomic(dashboardPath, renderDashboard(r.all, { repoUrl, title: `QuantGate: ${this.ctx.owner}/${this.ctx.repo}` }));
        }
      } catch (err) {
        this.warn(new OptionalStepError(`storing history in ${store.description} failed: ${(err as Error).message}`));
      }
    } else if (this.history && !isPullRequestEvent(this.ctx)) {
      section.historyNote = `history not stored: "${branch ?? "(no branch)"}" is not one of ${storeBranches.map((b) => `"${b}"`).join(", ") || "the stored branches (default branch unknown)"}`;
    }

    report = { ...report, ci: section };
    // Mode search: the "Suggested recipe" section follows the current recipe's report.
    const body = extra ? `${renderBody(report)}\n${extra.markdown}` : renderBody(report);
    written = await writeReport({ ...gateRun, report }, body);

    let comment: CommentResult | undefined;
    const pr = this.ctx.pullRequest;
    if (isPullRequestEvent(this.ctx) && pr && this.inputs.comment !== "never") {
      const failing = report.verdict === "fail" || report.gate.rules.some((r) => r.status === "warn");
      if (!this.inputs.githubToken) {
        this.deps.log.warning("no github-token: the pull-request comment is skipped (the gate still decides by its rules)");
      } else {
        try {
          const octokit = (this.deps.octokit ?? ((token: string, url: string) => createOctokit(token, url, this.deps.log)))(
            this.inputs.githubToken,
            this.ctx.apiUrl,
          );
          comment = await upsertComment(
            octokit,
            { owner: this.ctx.owner, repo: this.ctx.repo, issueNumber: pr.number, marker: commentMarker(this.id) },
            body,
            this.inputs.comment,
            failing,
          );
          this.deps.log.info(`pull-request comment ${comment.action}${comment.url ? `: ${comment.url}` : ""}`);
        } catch (err) {
          this.warn(err);
        }
      }
    }

    await this.saveWorkCache();
    const annotations = ruleAnnotations(report, workspacePath(this.ctx, this.config.configPath), this.config.lines, this.origins);
    return {
      report,
      body,
      reportPath: written.reportPath,
      summaryPath: written.summaryPath,
      annotations,
      comment,
      artifact,
      baseCommit: section.regression?.base.commit,
      historyLocation,
      dashboardPath,
      releaseRecordPath,
      cacheHits: cache.hits,
    };
  }
}
