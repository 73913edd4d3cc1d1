// The dashboard: one static HTML file (uPlot bundled in) with, per config, charts over commits and a table
// of the latest runs. The data is embedded, so the page works from a file, an artifact or GitHub Pages.
import type { Limit } from "../config/schema.js";
import type { HistoryEntry, HistoryFile, HistoryMetrics } from "../history/entry.js";
import { UPLOT_CSS, UPLOT_JS, UPLOT_VERSION } from "./vendor.js";

export const DASHBOARD_FILE = "index.html";

export interface DashboardOptions {
  readonly title?: string;
  /** https://github.com/owner/repo, for commit links. */
  readonly repoUrl?: string;
  /** Latest runs listed in each table. */
  readonly tableRows?: number;
}

interface SeriesSpec {
  readonly label: string;
  readonly values: (number | null)[];
  readonly kind: "value" | "float" | "fail" | "warn";
}

export interface ChartSpec {
  readonly id: string;
  readonly title: string;
  readonly unit: string;
  readonly series: SeriesSpec[];
}

export interface DashboardConfig {
  readonly config: string;
  readonly commits: string[];
  readonly charts: ChartSpec[];
  readonly rows: { commit: string; branch?: string; createdAt: string; verdict: string; runUrl?: string; message?: string; cells: Record<string, string> }[];
}

const val = (x: number | undefined): number | null => (x === undefined || !Number.isFinite(x) ? null : x);

function limitSeries(entries: readonly HistoryEntry[], rule: string, map: (limit: number, e: HistoryEntry) => number | undefined = (l) => l): SeriesSpec[] {
  const pick = (which: keyof Limit): (number | null)[] =>
    entries.map((e) => {
      const l = e.limits[rule]?.[which];
      return l === undefined ? null : val(map(l, e));
    });
  const out: SeriesSpec[] = [];
  const fail = pick("fail");
  const warn = pick("warn");
  if (fail.some((x) => x !== null)) out.push({ label: `limit (${rule})`, values: fail, kind: "fail" });
  if (warn.some((x) => x !== null)) out.push({ label: `warn (${rule})`, values: warn, kind: "warn" });
  return out;
}

const metric = (entries: readonly HistoryEntry[], key: keyof HistoryMetrics, scale = 1): (number | null)[] =>
  entries.map((e) => {
    const v = e.metrics[key];
    return v === undefined ? null : v * scale;
  });
const has = (s: SeriesSpec): boolean => s.kind !== "value" || s.values.some((x) => x !== null);

/** Pure: the charts and table of one config, from its history. */
export function dashboardModel(file: HistoryFile, tableRows = 20): DashboardConfig {
  const entries = file.entries;
  const commits = entries.map((e) => e.commit.slice(0, 7) || e.createdAt.slice(0, 10));
  const charts: ChartSpec[] = [];
  const add = (id: string, title: string, unit: string, series: SeriesSpec[]): void => {
    if (series.some((s) => s.kind === "value" && s.values.some((x) => x !== null))) charts.push({ id, title, unit, series: series.filter(has) });
  };
  const isLm = entries.some((e) => e.metrics.perplexityQuantized !== undefined);
  if (isLm) {
    add("perplexity", "Perplexity", "", [
      { label: "quantized", values: metric(entries, "perplexityQuantized"), kind: "value" },
      { label: "float", values: metric(entries, "perplexityFloat"), kind: "float" },
      ...limitSeries(entries, "max_perplexity_increase_pct", (l, e) =>
        e.metrics.perplexityFloat === undefined ? undefined : e.metrics.perplexityFloat * (1 + l / 100),
      ),
    ]);
  } else {
    add("accuracy", "Accuracy", "%", [
      { label: "quantized", values: metric(entries, "accuracyQuantized", 100), kind: "value" },
      { label: "float", values: metric(entries, "accuracyFloat", 100), kind: "float" },
      ...limitSeries(entries, "max_accuracy_drop", (l, e) => (e.metrics.accuracyFloat === undefined ? undefined : e.metrics.accuracyFloat * 100 - l)),
    ]);
  }
  add("kl", "KL divergence to float", "nats", [
    { label: "mean", values: metric(entries, "klMean"), kind: "value" },
    { label: "p99", values: metric(entries, "klP99"), kind: "value" },
    ...limitSeries(entries, "max_kl_mean"),
  ]);
  add("bpw", "Bits per weight", "bits", [
    { label: "bits per weight", values: metric(entries, "bitsPerWeight"), kind: "value" },
    ...limitSeries(entries, "max_bits_per_weight"),
  ]);
  add("size", "Model size", "KiB", [
    { label: "quantized", values: metric(entries, "sizeBytes", 1 / 1024), kind: "value" },
    ...limitSeries(entries, "max_model_size", (l) => l / 1024),
  ]);
  add("latency", "Latency", "ms", [
    { label: "p50", values: metric(entries, "latencyP50Ms"), kind: "value" },
    { label: "p95", values: metric(entries, "latencyP95Ms"), kind: "value" },
    { label: "float p50", values: metric(entries, "latencyP50MsFloat"), kind: "float" },
    ...limitSeries(entries, "max_latency_p50_ms"),
    ...limitSeries(entries, "max_latency_p95_ms"),
  ]);
  add("memory", "Peak memory (RSS)", "MiB", [
    { label: "quantized", values: metric(entries, "peakMemoryBytes", 1 / 1048576), kind: "value" },
    { label: "float", values: metric(entries, "peakMemoryBytesFloat", 1 / 1048576), kind: "float" },
    ...limitSeries(entries, "max_peak_memory", (l) => l / 1048576),
  ]);
  const f = (x: number | undefined, digits: number, scale = 1): string => (x === undefined ? "—" : (x * scale).toFixed(digits));
  const rows = [...entries]
    .reverse()
    .slice(0, tableRows)
    .map((e) => ({
      commit: e.commit,
      branch: e.branch,
      createdAt: e.createdAt,
      verdict: e.verdict,
      runUrl: e.runUrl,
      message: e.message,
      cells: {
        [isLm ? "Perplexity" : "Accuracy"]: isLm ? f(e.metrics.perplexityQuantized, 3) : `${f(e.metrics.accuracyQuantized, 2, 100)}%`,
        "KL mean": e.metrics.klMean === undefined ? "—" : e.metrics.klMean.toPrecision(3),
        "Bits/weight": f(e.metrics.bitsPerWeight, 3),
        "Size KiB": f(e.metrics.sizeBytes, 1, 1 / 1024),
        "p50 ms": f(e.metrics.latencyP50Ms, 3),
        "p95 ms": f(e.metrics.latencyP95Ms, 3),
        "Peak MiB": f(e.metrics.peakMemoryBytes, 1, 1 / 1048576),
        Recipe: `${e.recipe.format} b${e.recipe.blockSize} ${e.recipe.algorithm}`,
      },
    }));
  return { config: file.config, commits, charts, rows };
}

/** JSON that is safe inside a <script> element. */
const scriptJson = (value: unknown): string =>
  JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

const PAGE_SCRIPT = String.raw`
(function () {
  var data = JSON.parse(document.getElementById("quantgate-data").textContent);
  var colors = { value: ["#6f42c1", "#0a7ea4", "#2da44e", "#bf8700"], float: "#8c959f", fail: "#cf222e", warn: "#d4a72c" };
  var state = { ready: false, charts: [] };
  window.__quantgate = state;
  var root = document.getElementById("configs");
  data.configs.forEach(function (cfg) {
    var section = document.createElement("section");
    section.className = "config";
    section.setAttribute("data-config", cfg.config);
    var h = document.createElement("h2");
    h.textContent = cfg.config + " (" + cfg.commits.length + " runs)";
    section.appendChild(h);
    var grid = document.createElement("div");
    grid.className = "grid";
    section.appendChild(grid);
    root.appendChild(section);
    cfg.charts.forEach(function (chart) {
      var box = document.createElement("div");
      box.className = "chart";
      box.setAttribute("data-chart", chart.id);
      grid.appendChild(box);
      var xs = cfg.commits.map(function (_, i) { return i; });
      var valueIndex = 0;
      var series = [{ label: "commit", value: function (u, v) { return v == null ? "" : cfg.commits[v] || ""; } }].concat(
        chart.series.map(function (s) {
          var stroke = s.kind === "value" ? colors.value[valueIndex++ % colors.value.length] : colors[s.kind];
          return { label: s.label, stroke: stroke, width: s.kind === "value" ? 2 : 1.5, dash: s.kind === "fail" || s.kind === "warn" ? [6, 4] : s.kind === "float" ? [2, 3] : undefined,
            points: { show: s.kind === "value", size: 5 }, spanGaps: true };
        }),
      );
      var opts = {
        title: chart.title + (chart.unit ? " (" + chart.unit + ")" : ""),
        width: 560,
        height: 240,
        scales: { x: { time: false } },
        axes: [
          { values: function (u, splits) { return splits.map(function (v) { return Number.isInteger(v) ? cfg.commits[v] || "" : ""; }); }, rotate: 0 },
          { size: 60 },
        ],
        series: series,
      };
      var u = new uPlot(opts, [xs].concat(chart.series.map(function (s) { return s.values; })), box);
      var points = chart.series.filter(function (s) { return s.kind === "value"; })
        .reduce(function (n, s) { return n + s.values.filter(function (v) { return v !== null; }).length; }, 0);
      state.charts.push({ config: cfg.config, id: chart.id, title: chart.title, series: chart.series.length, points: points, plot: u });
    });
    var table = document.createElement("table");
    var cols = cfg.rows.length ? Object.keys(cfg.rows[0].cells) : [];
    var head = "<tr><th>Commit</th><th>Branch</th><th>Date</th><th>Verdict</th>" + cols.map(function (c) { return "<th>" + c + "</th>"; }).join("") + "</tr>";
    table.innerHTML = "<thead>" + head + "</thead><tbody></tbody>";
    cfg.rows.forEach(function (r) {
      var tr = document.createElement("tr");
      var td = function (content, isHtml) { var el = document.createElement("td"); if (isHtml) el.appendChild(content); else el.textContent = content; tr.appendChild(el); };
      var a = document.createElement(data.repoUrl || r.runUrl ? "a" : "span");
      a.textContent = r.commit.slice(0, 7);
      if (data.repoUrl) a.href = data.repoUrl + "/commit/" + r.commit; else if (r.runUrl) a.href = r.runUrl;
      if (r.message) a.title = r.message;
      td(a, true);
      td(r.branch || "");
      td(r.createdAt.replace("T", " ").slice(0, 16));
      var v = document.createElement(r.runUrl ? "a" : "span");
      v.textContent = r.verdict;
      v.className = r.verdict;
      if (r.runUrl) v.href = r.runUrl;
      td(v, true);
      cols.forEach(function (c) { td(r.cells[c]); });
      table.tBodies[0].appendChild(tr);
    });
    section.appendChild(table);
  });
  state.ready = true;
})();
`;

export function renderDashboard(files: readonly HistoryFile[], opts: DashboardOptions = {}): string {
  const configs = [...files].sort((a, b) => (a.config < b.config ? -1 : 1)).map((f) => dashboardModel(f, opts.tableRows));
  const title = opts.title ?? "QuantGate dashboard";
  const generated = new Date().toISOString();
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="quantgate (uPlot ${UPLOT_VERSION})">
<title>${escapeHtml(title)}</title>
<style>${UPLOT_CSS}</style>
<style>
body { font: 14px/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #1f2328; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.grid { display: flex; flex-wrap: wrap; gap: 16px; }
.chart { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px; }
table { border-collapse: collapse; margin-top: 16px; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: right; } th { background: #f6f8fa; }
td:nth-child(-n+4), th:nth-child(-n+4) { text-align: left; }
.muted { color: #656d76; }
.pass { color: #1a7f37; } .fail { color: #cf222e; font-weight: 600; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="muted">Generated ${generated} from ${files.reduce((n, f) => n + f.entries.length, 0)} history entries of ${files.length} config(s). Dashed red: fail limit; dashed yellow: warning level; dotted grey: float model.</p>
<div id="configs"></div>
<script type="application/json" id="quantgate-data">${scriptJson({ repoUrl: opts.repoUrl, configs })}</script>
<script>${UPLOT_JS.replace(/<\/script/gi, "<\\/script")}</script>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
}
