// Loading plugins from files (ES modules and CommonJS) written to a temp
// directory, and the errors for files that are not plugins.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { after, describe, test } from 'node:test'
import { PluginChain, PluginLoadError, loadPlugins, registeredHooks, type ClientInfo, type Plugin } from 'fbroker'

const dir = mkdtempSync(path.join(tmpdir(), 'fbroker-plugins-'))
after(() => rmSync(dir, { recursive: true, force: true }))

function write(rel: string, text: string): string {
  const file = path.join(dir, rel)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(file, text)
  return file
}

const client: ClientInfo = { id: 'c1', username: 'u', address: '127.0.0.1:1', protocolVersion: 4 }

write(
  'esm-auth.mjs',
  `const allowed = new Set(['alice'])
export const unused = 1
export default {
  name: 'esm-auth',
  async authenticate(client, username, password) {
    return allowed.has(username) && password?.toString() === 'pw'
  },
}
`,
)
write(
  'cjs-acl.cjs',
  `module.exports = {
  name: 'cjs-acl',
  authorizeSubscribe(client, sub) { return sub.topic.startsWith('public/') ? 1 : false },
  authorizePublish(client, packet) { return packet.topic.startsWith('public/') },
}
`,
)
write('transpiled.cjs', `Object.defineProperty(exports, '__esModule', { value: true }); exports.default = { name: 'transpiled', authenticate: () => true }\n`)
write('esm-pkg/package.json', '{ "type": "module" }\n')
write('esm-pkg/plugin.js', `export default { name: 'esm-js', authorizePublish: () => true }\n`)
write('cjs-pkg/package.json', '{ "type": "commonjs" }\n')
write('cjs-pkg/plugin.js', `module.exports = { name: 'cjs-js', authenticate: () => undefined }\n`)
write('node_modules/fbroker-plugin-example/package.json', '{ "name": "fbroker-plugin-example", "main": "index.js" }\n')
write('node_modules/fbroker-plugin-example/index.js', `module.exports = { name: 'from-package', authenticate: () => true }\n`)
write('bad/named-only.mjs', `export const plugin = { name: 'x' }\n`)
write('bad/no-name.mjs', `export default { authenticate() { return true } }\n`)
write('bad/not-object.cjs', `module.exports = function plugin() {}\n`)
write('bad/hook-not-function.mjs', `export default { name: 'h', authorizePublish: true }\n`)
write('bad/syntax.mjs', `export default { name: 'syntax', \n`)
write('bad/throws.cjs', `throw new Error('missing FBROKER_SOMETHING')\n`)

describe('loadPlugins', () => {
  test('loads an .mjs (import) and a .cjs (require) plugin, relative to the base directory, in order', async () => {
    const plugins = await loadPlugins(['./esm-auth.mjs', 'cjs-acl.cjs'], dir)
    assert.deepEqual(plugins.map((p) => p.name), ['esm-auth', 'cjs-acl'])
    assert.deepEqual(registeredHooks(plugins), { authenticate: true, authorizeSubscribe: true, authorizePublish: true })

    const chain = new PluginChain(plugins)
    assert.equal((await chain.authenticate(client, 'alice', Buffer.from('pw'))).outcome, 'allow')
    assert.equal((await chain.authenticate(client, 'bob', Buffer.from('pw'))).returnCode, 4)
    assert.deepEqual(await chain.authorizeSubscribe(client, [{ topic: 'public/a', qos: 2 }, { topic: 'private', qos: 0 }]), [1, 0x80])
    assert.deepEqual(
      await chain.authorizePublishBatch([
        { client, topic: 'public/x', payload: Buffer.alloc(0), qos: 0, retain: false },
        { client, topic: 'x', payload: Buffer.alloc(0), qos: 0, retain: false },
      ]),
      [true, false],
    )
  })

  test('absolute paths, .js in "type": "module" and "commonjs" packages, transpiled CommonJS, package names', async () => {
    const plugins = await loadPlugins(
      [path.join(dir, 'transpiled.cjs'), './esm-pkg/plugin.js', './cjs-pkg/plugin.js', 'fbroker-plugin-example'],
      dir,
    )
    assert.deepEqual(plugins.map((p) => p.name), ['transpiled', 'esm-js', 'cjs-js', 'from-package'])
  })

  test('objects are validated and used as they are, mixed with files', async () => {
    const inline: Plugin = { name: 'inline', authenticate: () => true }
    const plugins = await loadPlugins([inline, './cjs-acl.cjs'], dir)
    assert.equal(plugins[0], inline)
    await assert.rejects(loadPlugins([{ name: '' } as Plugin]), /plugin plugins\[0\]: the plugin must have a non-empty string "name"/)
  })

  const cases: [string, RegExp][] = [
    ['./missing.mjs', /^plugin \.\/missing\.mjs \(.*missing\.mjs\): file not found$/],
    ['no-such-package-fbroker', /^plugin no-such-package-fbroker: cannot find module "no-such-package-fbroker"/],
    ['./bad/named-only.mjs', /named-only\.mjs\): has no default export \(it exports "plugin"; use `export default`\)$/],
    ['./bad/no-name.mjs', /no-name\.mjs\): the default export must have a non-empty string "name", got none$/],
    ['./bad/not-object.cjs', /not-object\.cjs\): the default export must be an object \{ name, \.\.\.hooks \}, got a function$/],
    ['./bad/hook-not-function.mjs', /hook-not-function\.mjs\): "authorizePublish" must be a function, got boolean true$/],
    ['./bad/syntax.mjs', /syntax\.mjs\): failed to load: /],
    ['./bad/throws.cjs', /throws\.cjs\): failed to load: missing FBROKER_SOMETHING$/],
  ]
  for (const [spec, message] of cases) {
    test(`a clear error naming the file: ${spec}`, async () => {
      await assert.rejects(loadPlugins([spec], dir), (err: unknown) => {
        assert.ok(err instanceof PluginLoadError, String(err))
        assert.equal(err.spec, spec)
        assert.match(err.message, message)
        return true
      })
    })
  }

  test('two plugins with the same name are refused', async () => {
    await assert.rejects(
      loadPlugins(['./esm-auth.mjs', { name: 'esm-auth' }], dir),
      /plugin plugins\[1\]: name "esm-auth" is already used by plugin \.\/esm-auth\.mjs/,
    )
  })

  test('loads the same way in plain Node (no TypeScript loader), as `fbroker start` does', () => {
    const script = `
      const { loadPlugins } = require('fbroker')
      loadPlugins(['./esm-auth.mjs', './cjs-acl.cjs', './esm-pkg/plugin.js'], process.argv[1])
        .then((plugins) => console.log(JSON.stringify(plugins.map((p) => p.name))))
        .catch((err) => { console.error(err.message); process.exit(1) })
    `
    const r = spawnSync(process.execPath, ['-e', script, dir], { cwd: path.join(__dirname, '..', '..'), encoding: 'utf8', timeout: 20_000 })
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout), ['esm-auth', 'cjs-acl', 'esm-js'])
  })

  test('the base directory defaults to the current directory', async () => {
    const cwd = process.cwd()
    process.chdir(dir)
    try {
      assert.equal((await loadPlugins(['./cjs-acl.cjs']))[0]!.name, 'cjs-acl')
    } finally {
      process.chdir(cwd)
    }
  })
})
