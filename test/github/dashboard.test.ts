// The dashboard page in headless Chromium (Debian's chromium package, driven with playwright-core):
// charts render with the fixture's data points, limits are drawn, and a screenshot is saved for CI.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { describe, expect, it } from "vitest";
import { dashboardModel, renderDashboard } from "../../src/dashboard/render.js";
import { REPO_ROOT } from "../helpers/action.js";
import { historyFixture } from "./history-fixture.js";

const CHARTS = ["accuracy", "kl_mean", "kl_p99", "top1_agreement", "model_size", "bits_per_weight", "peak_memory", "latency_p50", "latency_p95"] as const;

const CHROMIUM = [process.env.QUANTGATE_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p): p is string => !!p && existsSync(p));

describe("dashboard", () => {
  it("builds per-config charts with limit series from the history", () => {
    const model = dashboardModel(historyFixture(24));
    expect(model.charts.map((c) => c.id)).toEqual([...CHARTS]);
    const kl = model.charts.find((c) => c.id === "kl_mean")!;
    expect(kl.series.map((s) => s.kind)).toEqual(["value", "fail", "warn"]);
    expect(kl.series[1]!.values.every((v) => v === 0.03)).toBe(true);
    // the accuracy limit is drawn in absolute terms: float accuracy minus the allowed drop
    expect(model.charts[0]!.series.find((s) => s.kind === "fail")!.values[0]).toBeCloseTo(0.85, 6);
    expect(model.rows).toHaveLength(20);
    expect(model.rows[0]!.commit).toBe(historyFixture(24).entries[23]!.commit);
  });

  it("keeps the embedded data inert inside the page", () => {
    const file = historyFixture(2);
    file.entries[0] = { ...file.entries[0]!, message: "</script><script>alert(1)</script>" };
    file.entries[1] = { ...file.entries[1]!, runUrl: "javascript:alert(1)" };
    const html = renderDashboard([file], { repoUrl: "javascript:alert(2)" });
    expect(html).not.toContain("</script><script>alert(1)");
    expect(html).not.toContain("javascript:");
  });

  it.skipIf(!CHROMIUM && !process.env.CI)("renders in headless Chromium from 24 history entries and saves a screenshot", async () => {
    expect(CHROMIUM, "chromium is not installed (apt-get install -y chromium)").toBeDefined();
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-dashboard-"));
    const page = path.join(dir, "index.html");
    await writeFile(
      page,
      renderDashboard([historyFixture(24), historyFixture(21, "tiny-lm-int3")], { repoUrl: "https://github.com/acme/models", title: "QuantGate: acme/models" }),
    );
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
    try {
      const tab = await browser.newPage({ viewport: { width: 1240, height: 900 } });
      const errors: string[] = [];
      tab.on("pageerror", (e) => errors.push(e.message));
      await tab.goto(pathToFileURL(page).href);
      // The page code runs in the browser; it is passed as source text (this project compiles without DOM types).
      await tab.waitForFunction("window.__quantgate && window.__quantgate.ready === true");
      const charts = (await tab.evaluate("window.__quantgate.charts.map((c) => ({ config: c.config, id: c.id, points: c.points, series: c.series }))")) as {
        config: string;
        id: string;
        points: number;
        series: number;
      }[];
      expect(errors).toEqual([]);
      expect(charts.filter((c) => c.config === "classifier").map((c) => c.id)).toEqual([...CHARTS]);
      const acc = charts.find((c) => c.config === "classifier" && c.id === "accuracy")!;
      expect(acc.points).toBe(24);
      expect(charts.find((c) => c.config === "classifier" && c.id === "latency_p50")!.points).toBe(24);
      // every chart drew on its canvas: count non-background pixels
      const inked = (await tab.evaluate(`[...document.querySelectorAll(".chart canvas")].map((c) => {
        const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n;
      })`)) as number[];
      expect(inked).toHaveLength(CHARTS.length * 2);
      for (const n of inked) expect(n).toBeGreaterThan(500);
      // the table links each run to its commit
      const links = (await tab.evaluate(
        `[...document.querySelectorAll("section[data-config=classifier] tbody tr td:first-child a")].map((a) => a.href)`,
      )) as string[];
      expect(links).toHaveLength(20);
      expect(links[0]).toMatch(/^https:\/\/github\.com\/acme\/models\/commit\/[0-9a-f]{40}$/);
      const out = path.join(REPO_ROOT, ".ci-out");
      await mkdir(out, { recursive: true });
      await tab.screenshot({ path: path.join(out, "dashboard.png"), fullPage: true });
      expect((await stat(path.join(out, "dashboard.png"))).size).toBeGreaterThan(20_000);
    } finally {
      await browser.close();
    }
  });
});
