// Name patterns (`*` any run of characters, `?` one character, everything else literal), matched against the
// whole name in O(pattern × name) time. Regular-expression translations (ours before, picomatch and minimatch
// too) backtrack exponentially on patterns such as `*a*a*a*a*a*a*a*a*a*a*a*b`; this matcher cannot.

/** Whether `name` matches `pattern` as a whole. Tensor names hold `/`: `*` matches it too (no path semantics). */
export function globMatch(pattern: string, name: string): boolean {
  const p = Array.from(pattern);
  const s = Array.from(name);
  let pi = 0;
  let si = 0;
  // The last `*` seen and the name position it currently stands for: on a mismatch, that star takes one more character.
  let star = -1;
  let starSi = 0;
  while (si < s.length) {
    if (pi < p.length && (p[pi] === "?" || (p[pi] !== "*" && p[pi] === s[si]))) {
      pi++;
      si++;
    } else if (pi < p.length && p[pi] === "*") {
      star = pi++;
      starSi = si;
    } else if (star >= 0) {
      pi = star + 1;
      si = ++starSi;
    } else {
      return false;
    }
  }
  while (pi < p.length && p[pi] === "*") pi++;
  return pi === p.length;
}
