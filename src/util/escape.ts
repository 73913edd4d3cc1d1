// Names from models, configs and payloads are text, never markup: escapes for markdown tables, HTML and annotations.

const HTML: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML[c]!);
}

/**
 * Escapes text for one markdown table cell or inline run: HTML-escaped (so `<!--`, tags and comment markers are
 * inert), markdown punctuation backslash-escaped, `|` escaped, and newlines folded to a space so a name can never
 * start a new line, heading or table row.
 */
export function escapeMarkdown(text: string): string {
  return escapeHtml(text.replace(/[\r\n\u2028\u2029]+/g, " "))
    .replace(/[\\`*_{}[\]()#+!|~]/g, (c) => `\\${c}`)
    .replace(/^(\s*)([-=>])/, "$1\\$2");
}

/** Folds control characters and newlines for a single-line log or annotation message. */
export function singleLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, " ");
}

/**
 * A markdown code span of text: content is literal there (no backslash or HTML escapes apply), so backticks
 * are replaced, `|` is escaped for table cells (GitHub honours `\|` inside code spans in tables) and newlines fold.
 */
export function codeSpan(text: string): string {
  return (
    "`" +
    text
      .replace(/[\r\n\u2028\u2029]+/g, " ")
      .replace(/`/g, "'")
      .replace(/\|/g, "\\|") +
    "`"
  );
}
