// The dashboard: one static HTML file (uPlot bundled in) with, per config, charts over commits and a table
// of the latest runs. The data is embedded, so the page works from a file, an artifact or GitHub Pages.
import { GATE_RULES, type RuleDef } from "../gate/rules.js";
import { normalizeEntry, type HistoryEntry, type HistoryFile, type HistoryMetric } from "../history/entry.js";
import type { MetricUnit } from "../tasks/types.js";
import { escapeHtml } from "../util/escape.js";
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

/** Only http(s) URLs become links. */
export const safeUrl = (url: string | undefined): string | undefined => (url && /^https?:\/\/[^\s"'<>]+$/i.test(url) ? url : undefined);

/** How a metric's values are drawn: bytes in KiB or MiB, everything else in its own unit. */
function scaleOf(unit: MetricUnit, values: readonly (number | undefined)[]): { scale: number; unit: string } {
  if (unit === "bytes") {
    const big = values.some((v) => v !== undefined && v >= 1048576);
    return big ? { scale: 1 / 1048576, unit: "MiB" } : { scale: 1 / 1024, unit: "KiB" };
  }
  return { scale: 1, unit: unit === "ratio" || unit === "value" ? "" : unit };
}

/** A gate rule's limit drawn in the metric's own terms (an allowed drop becomes float minus the drop). */
function limitInMetric(def: RuleDef, limit: number, float: number | undefined): number | undefined {
  switch (def.kind) {
    case "value_max":
    case "value_min":
      return limit;
    case "drop_points":
      return float === undefined ? undefined : float - limit / 100;
    case "drop_pct":
      return float === undefined ? undefined : float * (1 - limit / 100);
    case "increase_points":
      return float === undefined ? undefined : float + limit / 100;
    case "increase":
      return float === undefined ? undefined : float + limit;
    case "increase_pct":
      return float === undefined ? undefined : float * (1 + limit / 100);
    case "ratio_max":
      return float === undefined ? undefined : float * limit;
  }
}

function limitSeries(entries: readonly HistoryEntry[], key: string, scale: number): SeriesSpec[] {
  const out: SeriesSpec[] = [];
  for (const def of GATE_RULES as readonly RuleDef[]) {
    if (def.metric !== key) continue;
    for (const which of ["fail", "warn"] as const) {
      const values = entries.map((e) => {
        const l = e.limits[def.key]?.[which];
        const v = l === undefined ? undefined : limitInMetric(def, l, e.metrics[key]?.float);
        return v === undefined ? null : val(v * scale);
      });
      if (values.some((x) => x !== null)) out.push({ label: `${which === "fail" ? "limit" : "warn"} (${def.key})`, values, kind: which });
    }
  }
  return out;
}

/** Short cell text of a metric value. */
function cell(m: HistoryMetric | undefined): string {
  if (!m) return "—";
  const v = m.quantized;
  switch (m.unit) {
    case "bytes":
      return v >= 1048576 ? `${(v / 1048576).toFixed(2)} MiB` : `${(v / 1024).toFixed(1)} KiB`;
    case "ms":
      return v.toFixed(3);
    case "ratio":
      return v.toFixed(4);
    default:
      return v.toPrecision(4);
  }
}

/** Pure: one chart per metric key present in the history, and a table of the latest runs. */
export function dashboardModel(file: HistoryFile, tableRows = 20): DashboardConfig {
  const entries = file.entries.map(normalizeEntry);
  const commits = entries.map((e) => e.commit.slice(0, 7) || e.createdAt.slice(0, 10));
  const keys: string[] = [];
  for (const e of entries) for (const k of Object.keys(e.metrics)) if (!keys.includes(k)) keys.push(k);
  const charts: ChartSpec[] = [];
  for (const key of keys) {
    const latest = [...entries].reverse().find((e) => e.metrics[key])!.metrics[key]!;
    const { scale, unit } = scaleOf(
      latest.unit,
      entries.map((e) => e.metrics[key]?.quantized),
    );
    const series: SeriesSpec[] = [{ label: "quantized", values: entries.map((e) => val((e.metrics[key]?.quantized ?? NaN) * scale)), kind: "value" }];
    const float = entries.map((e) => val((e.metrics[key]?.float ?? NaN) * scale));
    // A float line only where it differs from the quantized one's meaning (32 bits per weight is not a trend).
    if (float.some((x) => x !== null) && latest.unit !== "bits") series.push({ label: "float", values: float, kind: "float" });
    series.push(...limitSeries(entries, key, scale));
    charts.push({ id: key, title: latest.label, unit, series });
  }
  const columns = keys.filter((k) => !k.includes("."));
  const rows = [...entries]
    .reverse()
    .slice(0, tableRows)
    .map((e) => ({
      commit: e.commit,
      branch: e.branch,
      createdAt: e.createdAt,
      verdict: e.verdict,
      runUrl: safeUrl(e.runUrl),
      message: e.message,
      cells: {
        ...Object.fromEntries(columns.map((k) => [entries[entries.length - 1]!.metrics[k]?.label ?? k, cell(e.metrics[k])])),
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
    var thead = table.createTHead().insertRow();
    ["Commit", "Branch", "Date", "Verdict"].concat(cols).forEach(function (c) { var th = document.createElement("th"); th.textContent = c; thead.appendChild(th); });
    table.createTBody();
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
  const repoUrl = safeUrl(opts.repoUrl);
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
<script type="application/json" id="quantgate-data">${scriptJson({ repoUrl, configs })}</script>
<script>${UPLOT_JS.replace(/<\/script/gi, "<\\/script")}</script>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
}
