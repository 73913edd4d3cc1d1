// Typed readers for byte sizes ("512MiB"), percentages ("5%") and durations ("20ms").

const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** Parses "512MiB", "4 MB", "1200" (bytes); returns undefined when malformed. */
export function parseBytes(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isSafeInteger(Math.round(value)) && value >= 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (!m) return undefined;
  const unit = BYTE_UNITS[(m[2] || "b").toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * unit);
  // "9999999999999999999999GiB" is not a budget anyone means: past 2^53 bytes the number is not exact.
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Parses "20ms", "1.5s" or a bare number of milliseconds. */
export function parseDurationMs(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|us)?\s*$/.exec(value);
  if (!m) return undefined;
  const scale = m[2] === "s" ? 1000 : m[2] === "us" ? 1e-3 : 1;
  return Number(m[1]) * scale;
}

/** Parses "5%" or 5 as a percentage number (5). */
export function parsePercent(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*%?\s*$/.exec(value);
  return m ? Number(m[1]) : undefined;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(2)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}
