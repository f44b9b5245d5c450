// Shared helpers for the interop tests: run the keyhole binary, and start
// a keyhole DHT testnet (with a relay) for the independent peers to join.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
export const bin = process.env.KEYHOLE_BIN || join(here, '..', '..', 'bin', 'keyhole')

export function tempHome () {
  return mkdtempSync(join(tmpdir(), 'keyhole-interop-'))
}

// keyhole runs the binary synchronously; env adds to (never replaces) a
// base that points every network setting at loopback.
export function keyhole (home, args, { input, env = {} } = {}) {
  return spawnSync(bin, ['--home', home, ...args], {
    input,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, KEYHOLE_RELAYS: 'none', KEYHOLE_BOOTSTRAP: '127.0.0.1:1', ...env }
  })
}

// startTestnet runs `keyhole dht testnet` and resolves once it printed its
// addresses. Call stop() when done.
export function startTestnet (nodes = 30) {
  const child = spawn(bin, ['dht', 'testnet', '--nodes', String(nodes), '--relay-addr', '127.0.0.1:0', '--json'],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill(); reject(new Error('testnet did not start in 30 s')) }, 30_000)
    child.on('exit', code => reject(new Error(`testnet exited with ${code}`)))
    child.stdout.on('data', chunk => {
      out += chunk
      try {
        const info = JSON.parse(out)
        clearTimeout(timer)
        resolve({
          ...info,
          bootstrapEnv: info.bootstrap.join(','),
          bootstrapNodes: info.bootstrap.map(hp => { const [host, port] = hp.split(':'); return { host, port: Number(port) } }),
          stop: () => new Promise(resolve => { child.removeAllListeners('exit'); child.on('exit', resolve); child.kill('SIGTERM') })
        })
      } catch { /* not complete yet */ }
    })
  })
}
