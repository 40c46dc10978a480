// The browser test's harness: a tiny HTTP server on 127.0.0.1 that serves
// the test page and MQTT.js's browser bundle, and Debian's chromium
// launched headless through playwright-core (`npx playwright install`
// cannot download browsers on the CI machines, so the system one is used).
import { existsSync, readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { join, resolve } from 'node:path'
import type { AddressInfo } from 'node:net'

export const CHROMIUM = process.env.FBROKER_CHROMIUM ?? '/usr/bin/chromium'

/**
 * Why the browser tests cannot run here: undefined when chromium is present.
 * Locally (and only with FBROKER_SKIP_BROWSER=1) the tests are skipped;
 * otherwise they fail with this message, so CI never passes without them.
 */
export function browserMissing(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined
  return `${CHROMIUM} not found: install Debian's chromium (scripts/install-system-deps.sh does), or set FBROKER_SKIP_BROWSER=1 to skip the browser tests locally`
}
export const skipBrowser = process.env.FBROKER_SKIP_BROWSER === '1' && browserMissing() !== undefined

const repoRoot = resolve(__dirname, '..', '..')
const PAGE = join(__dirname, 'mqtt-page.html')
const BUNDLE = join(repoRoot, 'node_modules', 'mqtt', 'dist', 'mqtt.min.js')

export interface PageServer {
  /** http://127.0.0.1:PORT */
  origin: string
  /** Paths requested so far. */
  requests: string[]
  close(): Promise<void>
}

/** Serves GET / (the test page) and GET /mqtt.min.js; everything else is 404. */
export async function servePage(): Promise<PageServer> {
  const page = readFileSync(PAGE)
  const bundle = readFileSync(BUNDLE)
  const requests: string[] = []
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    requests.push(path ?? '')
    if (req.method === 'GET' && path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
      res.end(page)
    } else if (path === '/favicon.ico') {
      res.writeHead(204)
      res.end()
    } else if (req.method === 'GET' && path === '/mqtt.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' })
      res.end(bundle)
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' })
      res.end('not found')
    }
  })
  await new Promise<void>((ok, fail) => {
    server.once('error', fail)
    server.listen(0, '127.0.0.1', () => ok())
  })
  const { port } = server.address() as AddressInfo
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections()
        server.close(() => ok())
      }),
  }
}

/** Launches chromium headless (playwright-core's Browser). */
export async function launchChromium() {
  const missing = browserMissing()
  if (missing !== undefined) throw new Error(missing)
  const { chromium } = await import('playwright-core')
  return chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}
