// Discovery interop: keyhole's DHT testnet and relay against two
// independent implementations from npm: bittorrent-dht (BEP 44 put/get)
// and pkarr (signed packets over relays and the DHT).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import sodium from 'sodium-universal'
import BittorrentDHT from 'bittorrent-dht'
import { Pkarr, SignedPacket, generateKeyPair, z32 } from 'pkarr'
import { DHT as PkarrDHT } from 'pkarr/lib/dht.js'
import { keyhole, startTestnet, tempHome } from './helpers.mjs'

const certhash = 'uEiDhYw3FZ5PPKDsHpYUpdcjWvOzO9BWhcCpTEdDB4mF2SQ'
let tn
before(async () => { tn = await startTestnet(30) })
after(async () => { await tn?.stop() })

const verify = (sig, msg, pk) => sodium.crypto_sign_verify_detached(sig, msg, pk)

// A bittorrent-dht client that knows only our testnet, bound to loopback.
async function btDHT () {
  const dht = new BittorrentDHT({ bootstrap: tn.bootstrap, verify, host: '127.0.0.1' })
  await new Promise(resolve => dht.listen(0, '127.0.0.1', resolve))
  await new Promise(resolve => dht.ready ? resolve() : dht.once('ready', resolve))
  return dht
}

function pkarrPacket (answers) {
  const keypair = generateKeyPair()
  return { keypair, sp: SignedPacket.fromPacket(keypair, { id: 0, type: 'response', flags: 0, answers }) }
}

function newKeyholeIdentity () {
  const home = tempHome()
  const r = keyhole(home, ['id', 'new', '--no-passphrase', '--json'])
  assert.equal(r.status, 0, r.stderr)
  return { home, address: JSON.parse(r.stdout).address }
}

function publish (home, relays) {
  const r = keyhole(home, ['publish', '--json', '--kps', `127.0.0.1:4242:${certhash}`],
    { env: { KEYHOLE_BOOTSTRAP: tn.bootstrapEnv, KEYHOLE_RELAYS: relays } })
  assert.equal(r.status, 0, r.stderr)
  return JSON.parse(r.stdout)
}

function resolveWithKeyhole (address, env) {
  const r = keyhole(tempHome(), ['resolve', '--json', address], { env })
  assert.equal(r.status, 0, r.stderr)
  return JSON.parse(r.stdout)
}

test('bittorrent-dht puts a BEP 44 item through our testnet; keyhole resolves it', async () => {
  const dht = await btDHT()
  try {
    const { keypair, sp } = pkarrPacket([{ type: 'TXT', name: '_hello', ttl: 60, data: 'from bittorrent-dht' }])
    const args = sp.bep44Args()
    const stored = await new Promise((resolve, reject) => dht.put({ k: args.k, seq: args.seq, v: args.v, sig: args.sig },
      (err, hash, n) => err ? reject(err) : resolve(n)))
    assert.ok(stored > 0, 'no testnet node stored the item')
    const v = resolveWithKeyhole(z32.encode(keypair.publicKey), { KEYHOLE_BOOTSTRAP: tn.bootstrapEnv })
    assert.equal(v.from, 'dht')
    assert.equal(v.timestamp_us, args.seq)
    assert.equal(v.records.find(r => r.name === '_hello').value, 'from bittorrent-dht')
  } finally { dht.destroy() }
})

test('keyhole publishes to the DHT; bittorrent-dht and pkarr read it', async () => {
  const { home, address } = newKeyholeIdentity()
  const rep = publish(home, 'none')
  assert.ok(rep.dht.Stored > 0)
  const pk = z32.decode(address)
  const dht = await btDHT()
  try {
    const res = await new Promise((resolve, reject) => dht.get(crypto.createHash('sha1').update(pk).digest(),
      (err, r) => err ? reject(err) : resolve(r)))
    assert.ok(res, 'bittorrent-dht found nothing')
    assert.equal(res.seq, rep.seq)
    const sp = SignedPacket.fromBep44Args({ k: res.k, seq: res.seq, v: res.v, sig: res.sig })
    assert.equal(Buffer.concat(sp.resourceRecords('_kps')[0].data).toString(), `127.0.0.1:4242:${certhash}`)
  } finally { dht.destroy() }

  const pdht = new PkarrDHT({ bootstrap: tn.bootstrapNodes, storageLocation: tempHome() })
  try {
    const got = await pdht.get(pk)
    assert.ok(got, 'pkarr found nothing on the DHT')
    const sp = SignedPacket.fromBep44Args(got)
    assert.equal(sp.timestamp(), rep.seq)
  } finally { pdht.destroy() }
})

test('pkarr resolves a keyhole record through our relay', async () => {
  const { home, address } = newKeyholeIdentity()
  const rep = publish(home, tn.relay)
  assert.equal(rep.relays[0].error, undefined)
  const sp = await Pkarr.relayGet(tn.relay, z32.decode(address))
  assert.equal(sp.timestamp(), rep.seq)
  assert.equal(Buffer.concat(sp.resourceRecords('_keyhole')[0].data).toString(), 'v=1')
})

test('keyhole resolves records pkarr published to our relay and to the DHT', async () => {
  const viaRelay = pkarrPacket([{ type: 'TXT', name: '_via', ttl: 60, data: 'relay' }])
  const resp = await Pkarr.relayPut(tn.relay, viaRelay.sp)
  assert.equal(resp.status, 204)
  let v = resolveWithKeyhole(z32.encode(viaRelay.keypair.publicKey), { KEYHOLE_RELAYS: tn.relay, KEYHOLE_BOOTSTRAP: tn.bootstrapEnv })
  assert.equal(v.records.find(r => r.name === '_via').value, 'relay')

  const viaDHT = pkarrPacket([{ type: 'TXT', name: '_via', ttl: 60, data: 'dht' }])
  const pdht = new PkarrDHT({ bootstrap: tn.bootstrapNodes, storageLocation: tempHome() })
  try {
    await pdht.put(viaDHT.sp.bep44Args())
  } finally { pdht.destroy() }
  v = resolveWithKeyhole(z32.encode(viaDHT.keypair.publicKey), { KEYHOLE_BOOTSTRAP: tn.bootstrapEnv })
  assert.equal(v.from, 'dht')
  assert.equal(v.records.find(r => r.name === '_via').value, 'dht')
})

test('our relay refuses what pkarr would not sign', async () => {
  const { sp, keypair } = pkarrPacket([{ type: 'TXT', name: '_x', ttl: 60, data: 'y' }])
  const body = Buffer.from(sp.bytes())
  body[body.length - 1] ^= 1
  const url = `${tn.relay}/${z32.encode(keypair.publicKey)}`
  const put = await fetch(url, { method: 'PUT', body })
  assert.equal(put.status, 400)
  assert.match(await put.text(), /bad signature/)
  const get = await fetch(url)
  assert.equal(get.status, 404)
})
