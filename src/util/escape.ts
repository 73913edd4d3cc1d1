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
  return text
    .replace(/[\r\n\u2028\u2029]+/g, " ")
    .replace(/[&<>]/g, (c) => HTML[c]!)
    .replace(/[\\`*_{}[\]()#+!|~]/g, (c) => `\\${c}`)
    .replace(/^(\s*)([-=>])/, "$1\\$2");
}

/** Folds control characters and newlines for a single-line log or annotation message. */
export function singleLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, " ");
}

/** A name (tensor, rule, branch, file) as inline code that stays text. */
export function codeSpan(text: string): string {
  // An HTML code element rather than backticks: its content is escaped like any other text, so no name can
  // close it, start a line, or carry a comment marker (`<!--`) into the body.
  return `<code>${escapeMarkdown(text)}</code>`;
}
