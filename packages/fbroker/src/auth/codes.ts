/**
 * CONNACK and SUBACK codes used by the auth plugins, and the translation
 * between MQTT 3.1.1 return codes and MQTT 5.0 reason codes.
 */

/** MQTT 3.1/3.1.1 CONNACK return codes. */
export const ConnackCode = {
  ACCEPTED: 0,
  UNACCEPTABLE_PROTOCOL_VERSION: 1,
  IDENTIFIER_REJECTED: 2,
  SERVER_UNAVAILABLE: 3,
  BAD_USERNAME_OR_PASSWORD: 4,
  NOT_AUTHORIZED: 5,
} as const

/** SUBACK return code for a refused topic filter (all protocol versions). */
export const SUBACK_FAILURE = 0x80

/** Whether `code` is a return code a plugin may answer with: 0–5 (MQTT 3.1.1) or 0x80–0xFF (MQTT 5.0). */
export function isValidConnackCode(code: number): boolean {
  return Number.isInteger(code) && ((code >= 0 && code <= 5) || (code >= 0x80 && code <= 0xff))
}

const V3_TO_V5: Readonly<Record<number, number>> = {
  0: 0x00,
  1: 0x84, // Unsupported Protocol Version
  2: 0x85, // Client Identifier not valid
  3: 0x88, // Server unavailable
  4: 0x86, // Bad User Name or Password
  5: 0x87, // Not authorized
}

const V5_TO_V3: Readonly<Record<number, number>> = {
  0x84: 1,
  0x85: 2,
  0x88: 3, // Server unavailable
  0x89: 3, // Server busy
  0x9c: 3, // Use another server
  0x9d: 3, // Server moved
  0x9f: 3, // Connection rate exceeded
  0x86: 4, // Bad User Name or Password
  0x8c: 4, // Bad authentication method
  0x87: 5, // Not authorized
  0x8a: 5, // Banned
}

/**
 * The code to put in the CONNACK for a client of `protocolVersion`: MQTT 5.0
 * clients get a reason code (3.1.1 codes are translated, 4 → 0x86 and so on);
 * MQTT 3.1 and 3.1.1 clients get a return code 0–5 (reason codes are
 * translated to the nearest one, 5 "not authorized" when there is none).
 */
export function connackCodeFor(code: number, protocolVersion: number): number {
  if (protocolVersion >= 5) return code <= 5 ? (V3_TO_V5[code] ?? 0x87) : code
  if (code <= 5) return code
  return V5_TO_V3[code] ?? ConnackCode.NOT_AUTHORIZED
}

/** The refusal code for a plugin's `false`: 4 when credentials were given, else 5. */
export function refusalCode(username: string | undefined, password: Buffer | undefined): number {
  return username !== undefined || password !== undefined ? ConnackCode.BAD_USERNAME_OR_PASSWORD : ConnackCode.NOT_AUTHORIZED
}

/**
 * The broker's decision when no plugin (and no built-in source) answered
 * `authenticate`: accept when `allowAnonymous` is true; otherwise refuse with
 * 4 when the client sent credentials nobody could check, else 5.
 */
export function resolveUnansweredAuthentication(
  allowAnonymous: boolean,
  username: string | undefined,
  password: Buffer | undefined,
): { allow: boolean; returnCode: number } {
  if (allowAnonymous) return { allow: true, returnCode: ConnackCode.ACCEPTED }
  return { allow: false, returnCode: refusalCode(username, password) }
}
