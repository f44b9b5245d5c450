// Signed-packet interop between keyhole and the npm "pkarr" package, an
// independent implementation of Pkarr: each side must accept the other's
// packets and reject them once tampered with.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SignedPacket, generateKeyPair, z32 } from 'pkarr'

const here = dirname(fileURLToPath(import.meta.url))
const bin = process.env.KEYHOLE_BIN || join(here, '..', '..', 'bin', 'keyhole')
const home = mkdtempSync(join(tmpdir(), 'keyhole-interop-'))

function keyhole (args, input) {
  return spawnSync(bin, ['--home', home, ...args], { input, encoding: 'utf8' })
}

const certhash = 'uEiDhYw3FZ5PPKDsHpYUpdcjWvOzO9BWhcCpTEdDB4mF2SQ'

test('pkarr accepts a packet built by keyhole record build', () => {
  execFileSync(bin, ['--home', home, 'id', 'new', '--no-passphrase'])
  const built = JSON.parse(execFileSync(bin, ['--home', home, 'record', 'build', '--json',
    '--kps', `192.0.2.7:4242:${certhash}`, '--board', 'wss://board.example/']).toString())
  const bytes = Buffer.from(built.base64, 'base64')
  const publicKey = bytes.subarray(0, 32)
  assert.equal(z32.encode(publicKey), built.address)

  const sp = SignedPacket.fromBytes(publicKey, bytes.subarray(32)) // throws on a bad signature
  assert.equal(sp.timestamp(), built.timestamp_us)
  const kps = sp.resourceRecords('_kps')
  assert.equal(kps.length, 1)
  assert.equal(Buffer.concat(kps[0].data).toString(), `192.0.2.7:4242:${certhash}`)
  assert.equal(Buffer.concat(sp.resourceRecords('_keyhole')[0].data).toString(), 'v=1')

  // Negative control: the same check rejects a flipped bit.
  const bad = Buffer.from(bytes.subarray(32))
  bad[bad.length - 3] ^= 1
  assert.throws(() => SignedPacket.fromBytes(publicKey, bad), /Invalid signature/)
})

function pkarrPacket (answers) {
  const keypair = generateKeyPair()
  const sp = SignedPacket.fromPacket(keypair, { id: 0, type: 'response', flags: 0, answers })
  return { keypair, bytes: Buffer.concat([keypair.publicKey, sp.bytes()]) }
}

test('keyhole record verify accepts a packet built by pkarr', () => {
  const { keypair, bytes } = pkarrPacket([
    { type: 'TXT', name: '_hello', ttl: 300, data: 'from pkarr' },
    { type: 'A', name: '@', ttl: 300, data: '192.0.2.1' },
    { type: 'TXT', name: '_keyhole', ttl: 300, data: 'v=1' },
    { type: 'TXT', name: '_kps', ttl: 300, data: `198.51.100.2:9999:${certhash}` }
  ])
  const file = join(home, 'from-pkarr.bin')
  writeFileSync(file, bytes)
  const address = z32.encode(keypair.publicKey)
  const r = keyhole(['record', 'verify', '--json', '--key', address, file])
  assert.equal(r.status, 0, r.stderr)
  const v = JSON.parse(r.stdout)
  assert.equal(v.valid, true)
  assert.equal(v.address, address)
  const byName = Object.fromEntries(v.records.map(rr => [rr.name, rr]))
  assert.equal(byName._hello.value, 'from pkarr')
  assert.equal(byName['@'].type, 'A')
  assert.equal(byName['@'].value, '192.0.2.1')
  assert.deepEqual(v.content.direct, [`198.51.100.2:9999:${certhash}`])

  // The same packet as hex on stdin.
  const h = keyhole(['record', 'verify'], bytes.toString('hex'))
  assert.equal(h.status, 0, h.stderr)
})

test('keyhole rejects tampered pkarr packets, saying why', () => {
  const { keypair, bytes } = pkarrPacket([{ type: 'TXT', name: '_x', ttl: 60, data: 'y' }])
  const cases = [
    ['flipped bit', (() => { const b = Buffer.from(bytes); b[b.length - 1] ^= 1; return b })(), /bad signature/],
    ['truncated', bytes.subarray(0, 80), /truncated/],
    ['wrong key', bytes, /signed by a different key/, ['--key', z32.encode(generateKeyPair().publicKey)]]
  ]
  for (const [name, input, want, extra = []] of cases) {
    const r = keyhole(['record', 'verify', ...extra], input)
    assert.equal(r.status, 1, `${name}: exit ${r.status}`)
    assert.match(r.stderr, want, name)
    assert.equal(r.stderr.trim().split('\n').length, 1, `${name}: one error line`)
  }
  assert.ok(keypair)
})
