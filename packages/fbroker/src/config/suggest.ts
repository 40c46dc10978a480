/**
 * Edit distance (Levenshtein, with an adjacent transposition counted as one
 * edit) between two strings.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1
  const cols = b.length + 1
  const d: number[][] = Array.from({ length: rows }, (_, i) => {
    const row = new Array<number>(cols).fill(0)
    row[0] = i
    return row
  })
  for (let j = 0; j < cols; j++) d[0][j] = j
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let best = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, d[i - 2][j - 2] + 1)
      }
      d[i][j] = best
    }
  }
  return d[rows - 1][cols - 1]
}

/** `maxConnections` / `max-connections` / `MAX_CONNECTIONS` → `max_connections`. */
function toSnake(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/-/g, '_')
    .toLowerCase()
}

/**
 * The known name closest to `name`: one that differs only in spelling style
 * (camelCase, dashes, case), or else the nearest within edit distance 2.
 * Undefined when nothing is that close.
 */
export function closestName(name: string, known: readonly string[], normalize: (n: string) => string = toSnake): string | undefined {
  const normalized = normalize(name)
  const sameWord = known.find((k) => normalize(k) === normalized)
  if (sameWord !== undefined) return sameWord
  let best: string | undefined
  let bestDistance = 3
  for (const candidate of known) {
    const distance = Math.min(editDistance(name, candidate), editDistance(normalized, normalize(candidate)))
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

/** `unknown key (did you mean "x"?)` or `unknown key (known keys: …)`. */
export function unknownKeyProblem(name: string, known: readonly string[], what = 'key'): string {
  const suggestion = closestName(name, known)
  if (suggestion !== undefined) return `unknown ${what}; did you mean "${suggestion}"?`
  return `unknown ${what}; known ${what}s are: ${known.join(', ')}`
}
