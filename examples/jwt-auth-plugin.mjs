// An fbroker auth plugin: clients log in with a JSON Web Token as the MQTT
// password, and may only publish and subscribe under users/<their name>/#.
//
//   FBROKER_JWT_SECRET=... fbroker start --plugin examples/jwt-auth-plugin.mjs
//   mosquitto_pub -u alice -P "$(token for sub=alice)" -t users/alice/temp -m 21
//
// - The token must be an HS256 JWT signed with FBROKER_JWT_SECRET, with a
//   `sub` claim equal to the MQTT user name and an `exp` claim in the future
//   (`nbf`, when present, must have passed). Expiry is checked at CONNECT
//   only: a connected client stays connected after its token expires.
// - A password that is not shaped like a JWT gets no answer, so a plugin or
//   credential source after this one can check it as an ordinary password.
//   A JWT-shaped password that fails any check is refused.
// - Publish and subscribe are allowed only inside users/<user name>/#, for
//   every client (whoever authenticated it).
//
// Self-contained: only node:crypto, no JWT library.
import { createHmac, timingSafeEqual } from 'node:crypto'

const secret = process.env.FBROKER_JWT_SECRET
if (secret === undefined || secret === '') {
  throw new Error('FBROKER_JWT_SECRET is not set: the JWT plugin needs the HS256 signing secret')
}
/** Seconds of clock difference tolerated for exp and nbf (FBROKER_JWT_LEEWAY_SECS, default 0). */
const LEEWAY_SECS = Number(process.env.FBROKER_JWT_LEEWAY_SECS || 0)
if (!Number.isFinite(LEEWAY_SECS) || LEEWAY_SECS < 0 || LEEWAY_SECS > 3600) {
  // A NaN here would make every expiry comparison false, accepting expired tokens.
  throw new Error(`FBROKER_JWT_LEEWAY_SECS must be a number of seconds between 0 and 3600, got ${JSON.stringify(process.env.FBROKER_JWT_LEEWAY_SECS)}`)
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

function decodeJson(segment) {
  try {
    const value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'))
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : undefined
  } catch {
    return undefined
  }
}

/** The verified claims of an HS256 token, or undefined. */
function verifyToken(token) {
  const [headerPart, payloadPart, signaturePart] = token.split('.')
  const header = decodeJson(headerPart)
  if (header === undefined || header.alg !== 'HS256') return undefined // refuses "none" and every other algorithm
  const expected = createHmac('sha256', secret).update(`${headerPart}.${payloadPart}`).digest()
  const given = Buffer.from(signaturePart, 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
  const claims = decodeJson(payloadPart)
  if (claims === undefined) return undefined
  const now = Date.now() / 1000
  if (typeof claims.exp !== 'number' || claims.exp + LEEWAY_SECS <= now) return undefined
  if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || claims.nbf - LEEWAY_SECS > now)) return undefined
  return claims
}

/** A user name usable as one topic level: no separators, wildcards or NUL. */
function isSafeLevel(name) {
  return typeof name === 'string' && name.length > 0 && !/[/+#\u0000]/.test(name)
}

/** Whether `topic` (a name or a filter) stays inside users/<username>/#. */
function insideOwnTree(username, topic) {
  if (!isSafeLevel(username)) return false
  const base = `users/${username}`
  return topic === base || topic.startsWith(`${base}/`)
}

export default {
  name: 'jwt-auth',

  authenticate(client, username, password) {
    if (password === undefined) return undefined
    const token = password.toString('utf8')
    if (!JWT_SHAPE.test(token)) return undefined // not a JWT: let the next plugin decide
    const claims = verifyToken(token)
    if (claims === undefined) return false
    return isSafeLevel(claims.sub) && claims.sub === username
  },

  authorizeSubscribe(client, subscription) {
    return insideOwnTree(client.username, subscription.topic) ? subscription.qos : false
  },

  authorizePublish(client, packet) {
    return insideOwnTree(client.username, packet.topic)
  },
}
