#!/usr/bin/env node
// Checks test/CONFORMANCE.md against the test files it cites.
//
//   node test/scripts/check-conformance.mjs [path/to/CONFORMANCE.md]
//
// A test reference is `<file>.test.ts : <test name>`: one per `<br>`-separated
// line of a table column whose header starts with "Test", or anywhere in the
// text between backticks. A file name without a folder is looked up in
// test/integration/, one with a folder relative to test/. The checks:
//
// - every referenced file exists and has a test(...) whose name is exactly the
//   cited one (for a template-literal name, the cited name must be one of its
//   expansions, e.g. `QoS 1 ...` for `QoS ${qos} ...`);
// - in the statement table (first header cell "Statement"), every row names
//   one statement id `[MQTT-…]`, no id appears twice, the ids are in numeric
//   order, and a row that cites no test says why: its Notes cell starts with
//   "Client-side" or "n/a".
//
// Exits 1 with the list of problems, 0 when the table is consistent.
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const testRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'test')
const docPath = resolve(process.argv[2] ?? join(testRoot, 'CONFORMANCE.md'))

const REF = /^([\w./-]+\.test\.ts) : (.+)$/
const ID = /^\[MQTT-(\d+(?:[.-]\d+)*)\]$/

// ---- test names in a source file ---------------------------------------------

/** Decodes the JavaScript escapes of a string-literal body. */
function unescape(s) {
  return s.replace(/\\(u\{[0-9a-fA-F]+\}|u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|[^])/g, (_, e) => {
    if (e[0] === 'u' && e[1] === '{') return String.fromCodePoint(parseInt(e.slice(2, -1), 16))
    if (e[0] === 'u' || e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16))
    return { n: '\n', t: '\t', r: '\r', 0: '\0', '\n': '' }[e] ?? e
  })
}

/** The end index (exclusive) of the `${...}` expression whose body starts at `i`. */
function skipExpression(src, i) {
  let depth = 1
  while (i < src.length) {
    const ch = src[i]
    if (ch === '{') depth++
    else if (ch === '}' && --depth === 0) return i + 1
    else if (ch === "'" || ch === '"' || ch === '`') {
      i = skipString(src, i).end
      continue
    }
    i++
  }
  throw new Error('unterminated ${...}')
}

/** Reads the string literal starting at `i` (a quote or backtick). */
function skipString(src, i) {
  const quote = src[i]
  const parts = [] // literal text and, for templates, null for each ${...}
  let text = ''
  let j = i + 1
  while (j < src.length) {
    const ch = src[j]
    if (ch === '\\') {
      text += src.slice(j, j + 2)
      j += 2
    } else if (ch === quote) {
      parts.push(unescape(text))
      return { parts, end: j + 1 }
    } else if (quote === '`' && ch === '$' && src[j + 1] === '{') {
      parts.push(unescape(text), null)
      text = ''
      j = skipExpression(src, j + 2)
    } else {
      text += ch
      j++
    }
  }
  throw new Error(`unterminated string at offset ${i}`)
}

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** The names of the test(...) / it(...) calls of a file: exact strings and template patterns. */
function testNames(src) {
  const names = []
  const call = /\b(?:test|it)\s*\(\s*(['"`])/g
  for (let m; (m = call.exec(src)); ) {
    const { parts, end } = skipString(src, m.index + m[0].length - 1)
    call.lastIndex = end
    if (parts.length === 1) names.push({ text: parts[0], matches: (s) => s === parts[0] })
    else {
      const re = new RegExp('^' + parts.map((p) => (p === null ? '(.+?)' : escapeRegExp(p))).join('') + '$', 's')
      names.push({ text: parts.map((p) => (p === null ? '${…}' : p)).join(''), matches: (s) => re.test(s) })
    }
  }
  return names
}

// ---- the document -----------------------------------------------------------------

/** Splits a Markdown table row into trimmed cells (`\|` is a literal bar). */
const cells = (line) =>
  line
    .trim()
    .replace(/^\||\|$/g, '')
    .split(/(?<!\\)\|/)
    .map((c) => c.trim().replace(/\\\|/g, '|'))

/** Numeric sort key of a statement id: "3.1.2-10" -> [3, 1, 2, 10]. */
const idKey = (id) => id.split(/[.-]/).map(Number)
function compareIds(a, b) {
  const x = idKey(a)
  const y = idKey(b)
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? -1) - (y[i] ?? -1)
    if (d) return d
  }
  return 0
}

export function checkConformance(doc, root = testRoot) {
  const problems = []
  const refs = [] // { file, name, where }
  const statements = [] // { id, line, tests, notes }
  const lines = doc.split('\n')

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    const where = `line ${i + 1}`
    // a table: header row, separator row, body rows
    if (line.trimStart().startsWith('|') && /^\s*\|[\s:|-]+\|\s*$/.test(lines[i + 1] ?? '')) {
      const header = cells(line)
      const testCols = header.flatMap((h, k) => (/^tests?\b/i.test(h) ? [k] : []))
      const notesCol = header.findIndex((h) => /^notes?\b/i.test(h))
      const isStatements = /^statement/i.test(header[0])
      let j = i + 2
      for (; j < lines.length && lines[j].trimStart().startsWith('|'); j++) {
        const row = cells(lines[j])
        const at = `line ${j + 1}`
        if (row.length !== header.length) problems.push(`${at}: ${row.length} cells, the header has ${header.length}`)
        let cited = 0
        for (const k of testCols) {
          for (const seg of (row[k] ?? '').split(/<br\s*\/?>/i).map((s) => s.trim())) {
            if (seg === '') continue
            const m = REF.exec(seg)
            if (!m) problems.push(`${at}: not a "file.test.ts : test name" reference: ${seg}`)
            else {
              refs.push({ file: m[1], name: m[2], where: at })
              cited++
            }
          }
        }
        if (isStatements) {
          const idCell = row[0] ?? ''
          const m = ID.exec(idCell)
          if (!m) problems.push(`${at}: the first cell is not one statement id [MQTT-…]: ${idCell}`)
          const notes = notesCol >= 0 ? row[notesCol] ?? '' : ''
          statements.push({ id: m ? m[1] : idCell, at })
          if (cited === 0 && !/^(client-side|n\/a)\b/i.test(notes)) {
            problems.push(`${at}: ${idCell} cites no test; its Notes must start with "Client-side" or "n/a" to say why`)
          }
        }
      }
      i = j - 1
      continue
    }
    // references in running text, between backticks
    for (const m of line.matchAll(/`([^`]+)`/g)) {
      const r = REF.exec(m[1])
      if (r) refs.push({ file: r[1], name: r[2], where })
    }
  }

  // statement ids: unique and in numeric order
  const seen = new Map()
  for (const s of statements) {
    if (seen.has(s.id)) problems.push(`${s.at}: [MQTT-${s.id}] is listed twice (first at ${seen.get(s.id)})`)
    else seen.set(s.id, s.at)
  }
  for (let k = 1; k < statements.length; k++) {
    const [a, b] = [statements[k - 1], statements[k]]
    if (compareIds(a.id, b.id) > 0) problems.push(`${b.at}: [MQTT-${b.id}] comes after [MQTT-${a.id}]; the table must be sorted by statement id`)
  }

  // references: the file exists and has a test of that name
  const cache = new Map()
  for (const { file, name, where } of refs) {
    const path = file.includes('/') ? join(root, file) : join(root, 'integration', file)
    if (!cache.has(path)) cache.set(path, existsSync(path) ? testNames(readFileSync(path, 'utf8')) : null)
    const names = cache.get(path)
    if (names === null) problems.push(`${where}: ${file}: no such file`)
    else if (!names.some((n) => n.matches(name))) problems.push(`${where}: ${file} has no test named: ${name}`)
  }

  const lineOf = (p) => Number(/^line (\d+)/.exec(p)?.[1] ?? 0)
  problems.sort((a, b) => lineOf(a) - lineOf(b))
  return { problems, statements: statements.length, references: refs.length }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (!existsSync(docPath)) {
    console.error(`check-conformance: ${docPath} not found`)
    process.exit(2)
  }
  const { problems, statements, references } = checkConformance(readFileSync(docPath, 'utf8'))
  if (problems.length) {
    console.error(`check-conformance: ${docPath}: ${problems.length} problem(s):`)
    for (const p of problems) console.error(`  - ${p}`)
    process.exit(1)
  }
  console.log(`check-conformance: ${docPath}: ${statements} statements, ${references} test references, all found`)
}
