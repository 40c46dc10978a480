// A real browser on the WebSocket listeners: Debian's chromium, headless,
// driven by playwright-core, loads test/browser/mqtt-page.html (which loads
// node_modules/mqtt/dist/mqtt.min.js) from a tiny HTTP server on 127.0.0.1.
// The page connects to the broker, subscribes, publishes to itself and
// reports the round trip; a message from a TCP MQTT.js client must reach it
// too. Without /usr/bin/chromium these tests fail (CI installs it with
// scripts/install-system-deps.sh); FBROKER_SKIP_BROWSER=1 skips them locally.
import { after, before, describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { target } from '../helpers/broker'
import { uid } from '../helpers/clients'
import { connectVia } from '../helpers/listeners'
import { makeCerts } from '../helpers/tls'
import { browserMissing, launchChromium, servePage, skipBrowser, type PageServer } from './harness'

const skip =
  (target === 'mosquitto' && 'fbroker listeners configuration') ||
  (skipBrowser && 'FBROKER_SKIP_BROWSER=1 and chromium is not installed')

interface PageState {
  phase: string
  connected: boolean
  subscribed: boolean
  granted: number[] | null
  roundTripMs: number | null
  received: Array<{ topic: string; payload: string; qos: number; retain: boolean }>
  errors: string[]
  closed: boolean
  log: string[]
}

type Browser = Awaited<ReturnType<typeof launchChromium>>

test('[fbroker] chromium is installed for the browser tests', { skip }, () => {
  assert.equal(browserMissing(), undefined)
})

describe('MQTT.js in headless chromium over the WebSocket listeners', { skip }, () => {
  let browser: Browser | undefined
  let server: PageServer | undefined
  let broker: any
  const port = { tcp: 0, ws: 0, wss: 0, wsGood: 0, wsBad: 0 }
  const certs = makeCerts({ prefix: 'browser' })

  before(async () => {
    server = await servePage()
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Broker } = require('fbroker')
    broker = await Broker.start({
      host: '127.0.0.1',
      logger: false,
      listeners: [
        { type: 'tcp', port: 0 },
        { type: 'ws', port: 0 },
        { type: 'wss', port: 0, cert: certs.cert, key: certs.key },
        { type: 'ws', port: 0, allowedOrigins: [server.origin] },
        { type: 'ws', port: 0, allowedOrigins: ['https://somewhere-else.example'] },
      ],
    })
    const bound: Array<{ port: number }> = broker.boundListeners
    ;[port.tcp, port.ws, port.wss, port.wsGood, port.wsBad] = bound.map((l) => l.port) as [number, number, number, number, number]
    browser = await launchChromium()
  })
  after(async () => {
    await browser?.close()
    await broker?.close()
    await server?.close()
  })

  /** Opens the test page on a fresh browser context, pointed at `brokerUrl`; closed when the test ends. */
  async function openPage(t: TestContext, brokerUrl: string, prefix: string, contextOptions: { ignoreHTTPSErrors?: boolean } = {}) {
    const context = await browser!.newContext(contextOptions)
    t.after(() => context.close())
    const page = await context.newPage()
    const consoleLines: string[] = []
    page.on('console', (m) => consoleLines.push(m.text()))
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`))
    const url = `${server!.origin}/?broker=${encodeURIComponent(brokerUrl)}&prefix=${encodeURIComponent(prefix)}`
    await page.goto(url, { waitUntil: 'load' })
    const state = () => page.evaluate(() => (globalThis as unknown as { fbrokerTest: PageState }).fbrokerTest)
    /** Waits until `done(state)` holds in the page; fails with the page's state and console. */
    const waitFor = async (what: string, done: string, ms = 10_000) => {
      try {
        await page.waitForFunction(`(() => { const s = window.fbrokerTest; return !!s && (${done}) })()`, undefined, { timeout: ms, polling: 50 })
      } catch {
        assert.fail(`page: ${what} not reached within ${ms} ms; state ${JSON.stringify(await state())}; console ${JSON.stringify(consoleLines)}`)
      }
    }
    return { page, state, waitFor }
  }

  test('[fbroker] the page connects over ws://, subscribes, and gets its own QoS 1 publish back (round trip); a TCP client\'s message reaches it', async (t) => {
    const prefix = uid('browser/')
    const p = await openPage(t, `ws://127.0.0.1:${port.ws}/mqtt`, prefix)
    await p.waitFor('the round trip', 's.roundTripMs !== null')
    const s = await p.state()
    assert.equal(s.connected, true)
    assert.deepEqual(s.granted, [1])
    assert.deepEqual(s.errors, [])
    assert.deepEqual(s.received, [{ topic: `${prefix}/echo`, payload: 'ping from the browser', qos: 1, retain: false }])
    assert.ok(s.roundTripMs! >= 0 && s.roundTripMs! < 5000, `round trip ${s.roundTripMs} ms`)
    t.diagnostic(`browser round trip over ws: ${s.roundTripMs!.toFixed(1)} ms`)

    // From a TCP client to the page, and retained while it is there.
    const tcp = await connectVia(t, 'tcp', port.tcp)
    await tcp.publishAsync(`${prefix}/from-tcp`, 'hello browser', { qos: 1 })
    await p.waitFor('the TCP message', `s.received.some((m) => m.topic === ${JSON.stringify(`${prefix}/from-tcp`)})`)
    const got = (await p.state()).received.find((m) => m.topic === `${prefix}/from-tcp`)
    assert.deepEqual(got, { topic: `${prefix}/from-tcp`, payload: 'hello browser', qos: 1, retain: false })
    assert.equal((await p.state()).closed, false)
  })

  test('[fbroker] a page opened after a TCP client retained a message receives it flagged retained over ws://', async (t) => {
    const prefix = uid('browser-ret/')
    const tcp = await connectVia(t, 'tcp', port.tcp)
    await tcp.publishAsync(`${prefix}/state`, 'retained for the page', { qos: 1, retain: true })
    const p = await openPage(t, `ws://127.0.0.1:${port.ws}/mqtt`, prefix)
    await p.waitFor('the retained message', `s.received.some((m) => m.retain)`)
    const got = (await p.state()).received.find((m) => m.topic === `${prefix}/state`)
    assert.deepEqual(got, { topic: `${prefix}/state`, payload: 'retained for the page', qos: 1, retain: true })
    await tcp.publishAsync(`${prefix}/state`, '', { qos: 1, retain: true })
  })

  test('[fbroker] the page round-trips over wss:// (the test CA is not in chromium\'s store: HTTPS errors ignored for this context)', async (t) => {
    const prefix = uid('browser-wss/')
    const p = await openPage(t, `wss://127.0.0.1:${port.wss}/mqtt`, prefix, { ignoreHTTPSErrors: true })
    await p.waitFor('the round trip over wss', 's.roundTripMs !== null')
    assert.deepEqual((await p.state()).errors, [])
  })

  test('[fbroker] allowed_origins with a real browser: a listener listing the page\'s origin serves it, one listing only another origin refuses the upgrade', async (t) => {
    const good = await openPage(t, `ws://127.0.0.1:${port.wsGood}/mqtt`, uid('origin-ok/'))
    await good.waitFor('the round trip on the listener that allows the origin', 's.roundTripMs !== null')

    const bad = await openPage(t, `ws://127.0.0.1:${port.wsBad}/mqtt`, uid('origin-bad/'))
    await bad.waitFor('the refusal', 's.closed || s.errors.length > 0')
    await new Promise((r) => setTimeout(r, 300))
    const s = await bad.state()
    assert.equal(s.connected, false, `the page connected from a foreign origin: ${JSON.stringify(s)}`)
    assert.deepEqual(s.received, [])
  })
})
