import { readFileSync } from 'node:fs'
import * as path from 'node:path'

/** This package's version, read from its package.json (dist/version.js → ../package.json). */
export const VERSION: string = (
  JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
).version
