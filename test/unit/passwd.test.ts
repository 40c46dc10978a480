// `fbroker passwd`, run as users run it (node packages/fbroker/bin/fbroker.js
// passwd ...): file contents and mode, updates and deletes, usage errors, the
// no-echo prompt (through a pseudo-terminal), and compatibility with a real
// Mosquitto broker.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import * as path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, describe, test } from 'node:test'
import { parsePasswordFile, verifyPassword } from 'fbroker'

const root = path.resolve(__dirname, '..', '..')
const bin = path.join(root, 'packages', 'fbroker', 'bin', 'fbroker.js')
const dir = mkdtempSync(path.join(tmpdir(), 'fbroker-passwd-'))
after(() => rmSync(dir, { recursive: true, force: true }))

const has = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' }).error === undefined
const haveMosquitto = existsSync('/usr/sbin/mosquitto') || has('mosquitto', ['-h'])
const mosquittoBin = existsSync('/usr/sbin/mosquitto') ? '/usr/sbin/mosquitto' : 'mosquitto'
const haveMosquittoPub = has('mosquitto_pub', ['--help'])
const havePython = has('python3', ['--version'])

function passwd(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [bin, 'passwd', ...args], { cwd: dir, encoding: 'utf8', timeout: 30_000, input: input ?? '' })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

let n = 0
const fresh = () => path.join(dir, `pw-${++n}`)
const mode = (file: string) => statSync(file).mode & 0o777
const entries = (file: string) => parsePasswordFile(readFileSync(file, 'utf8'), file)

describe('fbroker passwd', () => {
  test('fbroker --help lists the passwd command', () => {
    const r = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' })
    assert.match(r.stdout, /^\s+passwd \[options\] <file> <user> \[password\]/m)
  })

  test('-c -b creates the file, mode 0600, with a $7$ entry that verifies', async () => {
    const file = fresh()
    const r = passwd(['-c', '-b', file, 'alice', 'wonder land'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, '')
    assert.equal(mode(file), 0o600)
    const text = readFileSync(file, 'utf8')
    assert.match(text, /^alice:\$7\$210000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==\n$/)
    assert.equal(await verifyPassword('wonder land', entries(file).get('alice')!), true)
    assert.equal(await verifyPassword('wonderland', entries(file).get('alice')!), false)
  })

  test('-b updates a user in place, appends a new one, keeps other lines; the result is 0600 and no temp file is left', async () => {
    const file = fresh()
    assert.equal(passwd(['-c', '-b', file, 'alice', 'a1']).code, 0)
    assert.equal(passwd(['-b', file, 'bob', 'b1']).code, 0)
    writeFileSync(file, `# team accounts\n${readFileSync(file, 'utf8')}`)
    chmodSync(file, 0o644)
    const bobBefore = entries(file).get('bob')

    assert.equal(passwd(['-b', file, 'alice', 'a2']).code, 0)
    assert.equal(passwd(['-b', file, 'carol', 'c1']).code, 0)
    const lines = readFileSync(file, 'utf8').split('\n')
    assert.equal(lines[0], '# team accounts')
    assert.deepEqual(lines.slice(1).map((l) => l.split(':')[0]), ['alice', 'bob', 'carol', ''])
    const users = entries(file)
    assert.equal(await verifyPassword('a2', users.get('alice')!), true)
    assert.equal(await verifyPassword('a1', users.get('alice')!), false)
    assert.equal(users.get('bob'), bobBefore)
    assert.equal(await verifyPassword('c1', users.get('carol')!), true)
    assert.equal(mode(file), 0o600)
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp')), [])
  })

  test('-D deletes a user; deleting a missing user or from a missing file fails with 1', () => {
    const file = fresh()
    passwd(['-c', '-b', file, 'alice', 'a'])
    passwd(['-b', file, 'bob', 'b'])
    const r = passwd(['-D', file, 'alice'])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual([...entries(file).keys()], ['bob'])
    assert.equal(mode(file), 0o600)

    const again = passwd(['-D', file, 'alice'])
    assert.equal(again.code, 1)
    assert.equal(again.stderr, `fbroker passwd: user "alice" not found in ${file}\n`)
    const missing = passwd(['-D', path.join(dir, 'nope'), 'alice'])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /nope: no such file \(use -c to create it\)/)
  })

  test('-c overwrites an existing file with only the given user', () => {
    const file = fresh()
    passwd(['-c', '-b', file, 'alice', 'a'])
    passwd(['-b', file, 'bob', 'b'])
    assert.equal(passwd(['-c', '-b', file, 'carol', 'c']).code, 0)
    assert.deepEqual([...entries(file).keys()], ['carol'])
  })

  test('without -c, a missing file is an error that suggests -c', () => {
    const r = passwd(['-b', path.join(dir, 'absent'), 'alice', 'a'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^fbroker passwd: .*absent: no such file \(use -c to create it\)\n$/)
    assert.equal(existsSync(path.join(dir, 'absent')), false)
  })

  test('--iterations sets the PBKDF2 count, at least 210000', async () => {
    const file = fresh()
    assert.equal(passwd(['-c', '-b', '--iterations', '250000', file, 'alice', 'a']).code, 0)
    assert.match(readFileSync(file, 'utf8'), /^alice:\$7\$250000\$/)
    assert.equal(await verifyPassword('a', entries(file).get('alice')!), true)
    const low = passwd(['-c', '-b', '-I', '1000', fresh(), 'alice', 'a'])
    assert.equal(low.code, 2)
    assert.match(low.stderr, /--iterations: expected an integer between 210000 and 10000000, got 1000/)
  })

  test('usage errors exit with 2 and write nothing', () => {
    const file = fresh()
    const cases: [string[], RegExp][] = [
      [['-c', '-D', file, 'alice'], /-c \(create\) and -D \(delete\) cannot be combined/],
      [['-b', file, 'alice'], /-b \(batch\) needs the password after the user name/],
      [['-c', file, 'alice', 'pw'], /a password on the command line needs -b/],
      [['-D', '-b', file, 'alice', 'pw'], /-D \(delete\) takes no password/],
      [['-c', '-b', file, 'al:ice', 'pw'], /invalid user name "al:ice"/],
      [['-c', '-b', file, '', 'pw'], /invalid user name ""/],
      [['-c', '-b', file], /missing required argument 'user'/],
    ]
    for (const [args, message] of cases) {
      const r = passwd(args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, message)
    }
    assert.equal(existsSync(file), false)
    const empty = passwd(['-c', '-b', file, 'alice', ''])
    assert.equal(empty.code, 1)
    assert.match(empty.stderr, /the password must not be empty/)
  })

  test('without -b and with standard input not a terminal, it fails clearly instead of reading an echoed password', () => {
    const file = fresh()
    const r = passwd(['-c', file, 'alice'], 'secret\nsecret\n')
    assert.equal(r.code, 1)
    assert.match(r.stderr, /standard input is not a terminal, so the password cannot be read without echo/)
    assert.equal(existsSync(file), false)
  })

  // Drives the prompt through a real pseudo-terminal (Python's pty module).
  const ptyDriver = `
import json, os, pty, select, sys, time
argv = json.loads(sys.argv[1])
answers = json.loads(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
out = b''
def read_until(token, timeout=20):
    global out
    end = time.time() + timeout
    while token is None or token not in out:
        left = end - time.time()
        if left <= 0:
            if token is None:
                return
            sys.exit('timeout waiting for %r, got %r' % (token, out))
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b''
        if not chunk:
            if token is None:
                return
            sys.exit('end of output waiting for %r, got %r' % (token, out))
        out += chunk
for prompt, answer in answers:
    read_until(prompt.encode())
    os.write(fd, answer.encode())
read_until(None)
_, status = os.waitpid(pid, 0)
print(json.dumps({'code': os.waitstatus_to_exitcode(status), 'output': out.decode('utf8', 'replace')}))
`
  function withPty(args: string[], answers: [string, string][]): { code: number; output: string } {
    const argv = JSON.stringify([process.execPath, bin, 'passwd', ...args])
    const r = spawnSync('python3', ['-c', ptyDriver, argv, JSON.stringify(answers)], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
    assert.equal(r.status, 0, r.stderr)
    return JSON.parse(r.stdout) as { code: number; output: string }
  }

  test('prompts twice on a terminal without echoing the password; Backspace edits', { skip: havePython ? false : 'python3 is not installed' }, async () => {
    const file = fresh()
    const r = withPty(['-c', file, 'alice'], [
      ['Password: ', 'terminal pässwordX\u007f\r'],
      ['Reenter password: ', 'terminal pässword\r'],
    ])
    assert.equal(r.code, 0, r.output)
    assert.match(r.output, /Password: \r?\nReenter password: \r?\n/)
    assert.doesNotMatch(r.output, /terminal/)
    assert.equal(await verifyPassword('terminal pässword', entries(file).get('alice')!), true)
    assert.equal(mode(file), 0o600)

    // Both lines typed ahead in one go (and a CRLF): the second is kept for the second prompt.
    const ahead = withPty([file, 'bob'], [['Password: ', 'typed ahead\r\ntyped ahead\r']])
    assert.equal(ahead.code, 0, ahead.output)
    assert.doesNotMatch(ahead.output, /typed/)
    assert.equal(await verifyPassword('typed ahead', entries(file).get('bob')!), true)
  })

  test('on a terminal, passwords that differ fail with 1 and leave the file alone; Ctrl-C aborts with 130', { skip: havePython ? false : 'python3 is not installed' }, () => {
    const file = fresh()
    passwd(['-c', '-b', file, 'alice', 'keep'])
    const before = readFileSync(file, 'utf8')
    const r = withPty([file, 'alice'], [
      ['Password: ', 'one\r'],
      ['Reenter password: ', 'two\r'],
    ])
    assert.equal(r.code, 1)
    assert.match(r.output, /the passwords do not match/)
    assert.equal(readFileSync(file, 'utf8'), before)

    const interrupted = withPty([file, 'alice'], [['Password: ', 'abc\u0003']])
    assert.equal(interrupted.code, 130)
    assert.equal(readFileSync(file, 'utf8'), before)
  })
})

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => {
        socket.destroy()
        resolve(true)
      })
      socket.on('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`)
    await sleep(50)
  }
}

describe('fbroker passwd and Mosquitto', () => {
  const skip = haveMosquitto && haveMosquittoPub ? false : 'mosquitto or mosquitto_pub is not installed (scripts/install-system-deps.sh)'

  test('a real mosquitto broker accepts the file fbroker passwd writes', { skip }, async (t) => {
    const file = fresh()
    assert.equal(passwd(['-c', '-b', file, 'alice', 'mqtt pass']).code, 0)
    assert.equal(passwd(['-b', file, 'bob', 'other']).code, 0)
    const port = await freePort()
    const conf = path.join(dir, `mosquitto-${port}.conf`)
    // `user` = the current user, so that mosquitto started as root does not switch to an account that cannot read the 0600 file.
    writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous false\npassword_file ${file}\nuser ${userInfo().username}\n`)
    const broker = spawn(mosquittoBin, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] })
    let log = ''
    broker.stdout.on('data', (d: Buffer) => (log += d.toString()))
    broker.stderr.on('data', (d: Buffer) => (log += d.toString()))
    t.after(() => {
      if (broker.exitCode === null) broker.kill('SIGTERM')
    })
    await waitForPort(port, 10_000).catch((err: Error) => {
      throw new Error(`${err.message}; mosquitto log:\n${log}`)
    })
    const pub = (user: string, password: string) =>
      spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-u', user, '-P', password, '-t', 'fbroker/test', '-m', 'x'], {
        encoding: 'utf8',
        timeout: 15_000,
      })
    const ok = pub('alice', 'mqtt pass')
    assert.equal(ok.status, 0, `${ok.stderr}\n${log}`)
    assert.equal(pub('bob', 'other').status, 0)
    const bad = pub('alice', 'wrong')
    assert.notEqual(bad.status, 0)
    assert.match(bad.stderr, /not authori[sz]ed/i)
  })

  test('fbroker passwd updates a file mosquitto_passwd wrote, keeping its entries', { skip: has('mosquitto_passwd', ['-h']) ? false : 'mosquitto_passwd is not installed' }, async () => {
    const file = fresh()
    writeFileSync(file, '')
    const r = spawnSync('mosquitto_passwd', ['-b', file, 'mqtt-user', 'from mosquitto'], { encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    const mosquittoEntry = entries(file).get('mqtt-user')!
    assert.equal(passwd(['-b', file, 'fb-user', 'from fbroker']).code, 0)
    const users = entries(file)
    assert.equal(users.get('mqtt-user'), mosquittoEntry)
    assert.equal(await verifyPassword('from mosquitto', users.get('mqtt-user')!), true)
    assert.equal(await verifyPassword('from fbroker', users.get('fb-user')!), true)
  })
})
