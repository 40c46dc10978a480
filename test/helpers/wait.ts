// Waiting in tests: fixed delays and polling for a condition.

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls `done` every `stepMs` until it returns true or `timeoutMs` has passed; never throws (assert afterwards). */
export async function waitUntil(done: () => boolean, timeoutMs = 2000, stepMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!done() && Date.now() < deadline) await sleep(stepMs)
}
