// Minimal Aedes server for the benchmark runner (bench/run.mjs).
// Usage: node bench/peers/aedes-server.mjs --host 127.0.0.1 --port 1883
// Aedes is loaded from bench/peers/node_modules (installed by bench/setup.sh).
// Anonymous, in-memory persistence (the default), no $SYS heartbeat chatter.
import net from 'node:net'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '1883' },
  },
})

const require = createRequire(import.meta.url)
const aedesPath = require.resolve('aedes')
const { Aedes } = await import(aedesPath)

const broker = await Aedes.createBroker({
  // Defaults otherwise (Aedes has no per-client inflight/queue limits to match).
  heartbeatInterval: 3_600_000,
  connectTimeout: 10_000,
  maxClientsIdLength: 64,
})

const server = net.createServer((socket) => {
  socket.setNoDelay(true)
  broker.handle(socket)
})
server.maxConnections = 20_000

server.listen({ host: values.host, port: Number(values.port), backlog: 4096 }, () => {
  const a = server.address()
  process.stdout.write(`aedes listening on ${a.address}:${a.port}\n`)
})

const stop = () => {
  server.close()
  broker.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
