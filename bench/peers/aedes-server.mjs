// Minimal Aedes server for the benchmark runner (bench/run.mjs).
// Usage: node bench/peers/aedes-server.mjs --host 127.0.0.1 --port 1883
//          [--tls-port P --cert server.pem --key server.key]
//          [--ws-port P] [--wss-port P --cert ... --key ...] [--ws-path /mqtt]
//          [--redis-url redis://127.0.0.1:6379/0 [--max-session-delivery N]]
// Aedes is loaded from bench/peers/node_modules (installed by bench/setup.sh);
// WebSocket listeners need the `ws` package there too (`createWebSocketStream`
// turns each WebSocket into the duplex stream Aedes reads MQTT from).
// Anonymous, no $SYS heartbeat chatter. Persistence: in-memory (the default),
// or with --redis-url aedes-persistence-redis on that Redis (ioredis options
// from the URL: host, port, db, password; everything else its defaults).
// mqemitter stays the default in-memory one either way (one broker process).
// --max-session-delivery: aedes-persistence-redis' `maxSessionDelivery`, the
// most queued messages sent to a persistent session when it reconnects
// (its default is 1000).
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '1883' },
    'tls-port': { type: 'string' },
    'ws-port': { type: 'string' },
    'wss-port': { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    'ws-path': { type: 'string', default: '/mqtt' },
    'redis-url': { type: 'string' },
    'max-session-delivery': { type: 'string' },
  },
})

const require = createRequire(import.meta.url)
const aedesPath = require.resolve('aedes')
const { Aedes } = await import(aedesPath)

let persistence
if (values['redis-url']) {
  const u = new URL(values['redis-url'])
  if (u.protocol !== 'redis:') throw new Error(`--redis-url: only redis:// URLs, got ${u.protocol}`)
  const redisPersistence = require('aedes-persistence-redis')
  const opts = {
    host: u.hostname || '127.0.0.1',
    port: Number(u.port || 6379),
    db: Number(u.pathname.slice(1) || 0),
    family: 4,
  }
  if (u.password) opts.password = decodeURIComponent(u.password)
  if (values['max-session-delivery']) opts.maxSessionDelivery = Number(values['max-session-delivery'])
  persistence = redisPersistence(opts)
}

const broker = await Aedes.createBroker({
  // Defaults otherwise (Aedes has no per-client inflight/queue limits to match).
  heartbeatInterval: 3_600_000,
  connectTimeout: 10_000,
  maxClientsIdLength: 64,
  ...(persistence ? { persistence } : {}),
})
if (persistence) process.stdout.write(`aedes persistence: aedes-persistence-redis on ${values['redis-url']}\n`)

const servers = []
const listen = (server, port, what) => {
  server.maxConnections = 20_000
  server.listen({ host: values.host, port: Number(port), backlog: 4096 }, () => {
    const a = server.address()
    process.stdout.write(`aedes listening (${what}) on ${a.address}:${a.port}\n`)
  })
  servers.push(server)
}

listen(net.createServer((socket) => {
  socket.setNoDelay(true)
  broker.handle(socket)
}), values.port, 'tcp')

const tlsOptions = () => {
  if (!values.cert || !values.key) throw new Error('--tls-port and --wss-port need --cert and --key')
  return { cert: fs.readFileSync(values.cert), key: fs.readFileSync(values.key) }
}

if (values['tls-port']) {
  const server = tls.createServer(tlsOptions(), (socket) => broker.handle(socket))
  // TCP_NODELAY on the socket under TLS, as soon as it is accepted.
  server.on('connection', (socket) => socket.setNoDelay(true))
  listen(server, values['tls-port'], 'tls')
}

if (values['ws-port'] || values['wss-port']) {
  const { WebSocketServer, createWebSocketStream } = require('ws')
  const serve = (server, port, what) => {
    server.on('connection', (socket) => socket.setNoDelay(true))
    // No handleProtocols: ws answers with the first subprotocol the client
    // offers (`mqtt`).
    const wss = new WebSocketServer({ server, path: values['ws-path'] })
    wss.on('connection', (ws) => broker.handle(createWebSocketStream(ws)))
    listen(server, port, what)
  }
  if (values['ws-port']) serve(http.createServer(), values['ws-port'], 'ws')
  if (values['wss-port']) serve(https.createServer(tlsOptions()), values['wss-port'], 'wss')
}

const stop = () => {
  for (const s of servers) s.close()
  broker.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
