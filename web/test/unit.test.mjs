// Unit tests without a browser: address and certhash parsing, framing,
// SDP synthesis and the ICE password, the auth messages and the error
// registry. Vectors marked "from Go" were printed by the Go
// implementation itself: a throwaway test file added to package kps only
// through `go test -overlay` (outside the repository) that prints
// icePassword, synthesizeAnswer, fingerprintBinding and authMessage for
// digest = 00 01 .. 1f, dialer digest = ff fe .. e0, ufrag
// "0123456789abcdef01" and the Ed25519 seed of 32 bytes 0x07.

import test from 'node:test';
import assert from 'node:assert/strict';
import { decodeZBase32Key, fromHex, loadInternals, toHexString } from '../test-support/internals.mjs';

const k = await loadInternals();

const DIGEST = Uint8Array.from({ length: 32 }, (_, i) => i);
const DIALER_DIGEST = Uint8Array.from({ length: 32 }, (_, i) => 0xff - i);
const UFRAG = '0123456789abcdef01';
const SEED = new Uint8Array(32).fill(7);

// from Go: record.EncodeCertHash(DIGEST)
const CERTHASH = 'uEiAAAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHw';
// from Go: icePassword(DIGEST, UFRAG)
const PWD = 'rzyuL5OUuHzRKnkx1hdfDQWVMgIDL3NrM6N79eIyCxw';
const FP =
  '00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:1F';
// from Go: synthesizeAnswer(127.0.0.1:4242, UFRAG, PWD, DIGEST)
const ANSWER4 =
  'v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\nm=application 4242 UDP/DTLS/SCTP webrtc-datachannel\r\n' +
  'c=IN IP4 127.0.0.1\r\na=mid:0\r\na=ice-ufrag:0123456789abcdef01\r\na=ice-pwd:' + PWD + '\r\n' +
  'a=fingerprint:sha-256 ' + FP + '\r\na=setup:passive\r\na=sctp-port:5000\r\na=max-message-size:1048576\r\n' +
  'a=candidate:1 1 UDP 1 127.0.0.1 4242 typ host\r\n';
// from Go: synthesizeAnswer([2001:db8::1]:443, UFRAG, PWD, DIGEST)
const ANSWER6 =
  'v=0\r\no=- 0 0 IN IP6 ::\r\ns=-\r\nt=0 0\r\na=ice-lite\r\nm=application 443 UDP/DTLS/SCTP webrtc-datachannel\r\n' +
  'c=IN IP6 2001:db8::1\r\na=mid:0\r\na=ice-ufrag:0123456789abcdef01\r\na=ice-pwd:' + PWD + '\r\n' +
  'a=fingerprint:sha-256 ' + FP + '\r\na=setup:passive\r\na=sctp-port:5000\r\na=max-message-size:1048576\r\n' +
  'a=candidate:1 1 UDP 1 2001:db8::1 443 typ host\r\n';
// from Go: fingerprintBinding(DIGEST, DIALER_DIGEST)
const BINDING = '701f3c6aeed634db52cd6c931a8d1c8ddcb7450cfec070bbe95f643bebb4a942';
// from Go: authMessage(roleDialer / roleListener, bindingFingerprints, BINDING, key from SEED)
const DIALER_MSG =
  '4b4841555448310002ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c3400b2439fd8ae1800a924fa6ab9ac22465467e923758d1cdd4bec42fdec20d95278953f07acd9676ae5f3056d9b13bfe0f04a249080a13f316e52821368c00a';
const LISTENER_MSG =
  '4b4841555448310102ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c59c0217de7ad39b01d6151080850e1a78196ddcc2a5a1fae43681af26acad7be99c0a11c9a0f8566b70314c8536ec87c8a58ab99dda59688eabe03a928305608';
// from Go: the key's z-base-32 form (identity.PublicKey.String)
const SEED_KEY_Z32 = '7jfgaa9nutjyixzikb7tgmsf9gkwq7iqz498zr1nd5ig1fng4esy';
const SEED_KEY_HEX = 'ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c';

test('certhash: the Go encoding round-trips', () => {
  assert.equal(k.encodeCerthash(DIGEST), CERTHASH);
  assert.deepEqual(k.parseCerthash(CERTHASH), DIGEST);
});

test('certhash: anything but u + base64url(0x12 0x20 + 32 bytes) is refused', () => {
  const mh = (code, len, n) => {
    const b = new Uint8Array(2 + n);
    b[0] = code;
    b[1] = len;
    return 'u' + Buffer.from(b).toString('base64url');
  };
  const bad = [
    '',
    'u',
    'm' + CERTHASH.slice(1), // another multibase
    'U' + CERTHASH.slice(1),
    CERTHASH + 'A', // too long
    CERTHASH.slice(0, -1), // too short
    CERTHASH.slice(0, -1) + '+', // not url alphabet
    CERTHASH.slice(0, -1) + '=',
    CERTHASH.slice(0, -1) + 'x', // non-zero unused trailing bits
    mh(0x13, 0x20, 32), // sha2-512 code
    mh(0x12, 0x21, 32),
    mh(0x12, 0x20, 31),
    mh(0x12, 0x20, 33),
  ];
  for (const s of bad) {
    assert.throws(() => k.parseCerthash(s), TypeError, s);
  }
});

test('address: IPv4 and IPv6 forms parse, IPv6 canonicalised like Go netip', () => {
  const a = k.parseAddress(`127.0.0.1:4242:${CERTHASH}`);
  assert.equal(a.ip, '127.0.0.1');
  assert.equal(a.family, 4);
  assert.equal(a.port, 4242);
  assert.deepEqual(a.digest, DIGEST);
  assert.equal(k.formatAddress(a), `127.0.0.1:4242:${CERTHASH}`);
  // Expected texts from Go: netip.ParseAddrPort(...).Addr().String()
  const v6 = [
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['1:0:2:0:3:0:4:0', '1:0:2:0:3:0:4:0'],
    ['::1.2.3.4', '::102:304'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['1::2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::1', '::1'],
  ];
  for (const [input, want] of v6) {
    const p = k.parseAddress(`[${input}]:443:${CERTHASH}`);
    assert.equal(p.ip, want, input);
    assert.equal(p.family, 6);
    assert.equal(k.formatAddress(p), `[${want}]:443:${CERTHASH}`);
  }
  assert.equal(k.parseAddress(`1.2.3.4:0080:${CERTHASH}`).port, 80);
  assert.equal(k.parseAddress(`1.2.3.4:65535:${CERTHASH}`).port, 65535);
});

test('address: malformed addresses are refused with TypeError', () => {
  const bad = [
    '',
    CERTHASH,
    `127.0.0.1:${CERTHASH}`,
    `127.0.0.1:0:${CERTHASH}`,
    `127.0.0.1:65536:${CERTHASH}`,
    `127.0.0.1:-1:${CERTHASH}`,
    `127.0.0.1:+80:${CERTHASH}`,
    `127.0.0.1:4242:`,
    `127.0.0.1:4242:${CERTHASH}:x`,
    `127.0.0.1:4242:${CERTHASH.slice(1)}`,
    `01.2.3.4:1:${CERTHASH}`,
    `1.2.3:1:${CERTHASH}`,
    `1.2.3.256:1:${CERTHASH}`,
    `localhost:1:${CERTHASH}`,
    `::1:443:${CERTHASH}`,
    `[1.2.3.4]:1:${CERTHASH}`,
    `[fe80::1%eth0]:1:${CERTHASH}`,
    `[::ffff:1.2.3.4]:1:${CERTHASH}`,
    `[::ffff:102:304]:1:${CERTHASH}`,
    `[1:2:3:4:5:6:7:8:9]:1:${CERTHASH}`,
    `[1::2::3]:1:${CERTHASH}`,
    `[:::]:1:${CERTHASH}`,
    `[12345::]:1:${CERTHASH}`,
    `[::1]443:${CERTHASH}`,
    `[::1:443:${CERTHASH}`,
  ];
  for (const s of bad) assert.throws(() => k.parseAddress(s), TypeError, s);
  assert.throws(() => k.parseAddress(42), TypeError);
});

test('sdp: ICE password and synthesized answers match the Go side byte for byte', () => {
  assert.equal(k.icePassword(DIGEST, UFRAG), PWD);
  assert.equal(PWD.length, 43);
  assert.equal(k.sdpFingerprint(DIGEST), FP);
  assert.equal(k.synthesizeAnswer(k.parseAddress(`127.0.0.1:4242:${CERTHASH}`), UFRAG, PWD), ANSWER4);
  assert.equal(k.synthesizeAnswer(k.parseAddress(`[2001:db8::1]:443:${CERTHASH}`), UFRAG, PWD), ANSWER6);
});

test('sdp: ufrags are 18 lower-case hex characters, fresh each time', () => {
  const seen = new Set();
  for (let i = 0; i < 50; i++) {
    const u = k.newUfrag();
    assert.match(u, /^[0-9a-f]{18}$/);
    seen.add(u);
  }
  assert.equal(seen.size, 50);
});

test('sdp: offer munging replaces every credential line and keeps the rest', () => {
  const offer =
    'v=0\r\na=ice-ufrag:wxyz\r\na=ice-pwd:xxxxxxxxxxxxxxxxxxxxxxxx\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n' +
    'a=ice-ufrag:wxyz\r\na=ice-pwd:xxxxxxxxxxxxxxxxxxxxxxxx\r\na=fingerprint:sha-256 ' + FP + '\r\n';
  const out = k.mungeOffer(offer, UFRAG, PWD);
  assert.equal(out.match(/a=ice-ufrag:0123456789abcdef01\r\n/g).length, 2);
  assert.equal(out.match(new RegExp(`a=ice-pwd:${PWD.replace(/[+/]/g, '\\$&')}\r\n`, 'g')).length, 2);
  assert.ok(!out.includes('wxyz'));
  assert.equal(out.replace(/a=ice-(ufrag|pwd):[^\r]*/g, ''), offer.replace(/a=ice-(ufrag|pwd):[^\r]*/g, ''));
  assert.throws(() => k.mungeOffer('v=0\r\n', UFRAG, PWD));
  assert.deepEqual(k.sha256Fingerprint(out), DIGEST);
  assert.deepEqual(k.sha256Fingerprint('a=fingerprint:sha-256 ' + FP.toLowerCase() + '\n'), DIGEST);
  assert.throws(() => k.sha256Fingerprint('a=fingerprint:sha-1 00:11\r\n'));
});

test('framing: encodings and decodings as SPEC 6.2 gives them', () => {
  assert.equal(toHexString(k.encodeCode(k.FRAME_RESET, 3)), '0200000003');
  assert.equal(toHexString(k.encodeCode(k.FRAME_STOP_SENDING, 1)), '0300000001');
  assert.equal(toHexString(k.encodeCode(k.FRAME_RESET, 0xfffffffe)), '02fffffffe');
  assert.equal(toHexString(k.encodeFin()), '01');
  assert.equal(toHexString(k.encodeData(Uint8Array.of(9, 8))), '000908');
  assert.equal(k.parseFrame(new Uint8Array(0)), null);
  assert.deepEqual(k.parseFrame(Uint8Array.of(0)), { type: 'data', payload: new Uint8Array(0) });
  assert.deepEqual(k.parseFrame(Uint8Array.of(0, 1, 2)), { type: 'data', payload: Uint8Array.of(1, 2) });
  assert.deepEqual(k.parseFrame(Uint8Array.of(1)), { type: 'fin' });
  assert.deepEqual(k.parseFrame(Uint8Array.of(1, 7)), { type: 'fin' });
  assert.deepEqual(k.parseFrame(fromHex('0200000003')), { type: 'reset', code: 3 });
  assert.deepEqual(k.parseFrame(fromHex('020000000a99')), { type: 'reset', code: 10 });
  assert.deepEqual(k.parseFrame(fromHex('0300000001')), { type: 'stop-sending', code: 1 });
  // A code shorter than 4 bytes reads as 0; unknown codes as internal-error (11).
  assert.deepEqual(k.parseFrame(fromHex('02')), { type: 'reset', code: 0 });
  assert.deepEqual(k.parseFrame(fromHex('03000001')), { type: 'stop-sending', code: 0 });
  assert.deepEqual(k.parseFrame(fromHex('0200000063')), { type: 'reset', code: 11 });
  assert.deepEqual(k.parseFrame(fromHex('03ffffffff')), { type: 'stop-sending', code: 11 });
  for (const t of [4, 0x10, 0xff]) {
    assert.throws(
      () => k.parseFrame(Uint8Array.of(t)),
      (e) => e instanceof k.KpsError && e.code === 'protocol-error' && e.wireCode === 6,
    );
  }
  assert.equal(k.MAX_FRAME_PAYLOAD, 16384);
});

test('errors: the SPEC 9.1 registry, unknown codes as internal-error', () => {
  const names = ['none', 'cancelled', 'closed', 'reset', 'timeout', 'network-error', 'protocol-error',
    'unsupported', 'too-large', 'queue-full', 'permission-denied', 'internal-error'];
  names.forEach((n, i) => {
    assert.equal(k.codeName(i), n);
    assert.equal(k.toWireCode(n), i);
    const e = new k.KpsError(i, 'x');
    assert.equal(e.code, n);
    assert.equal(e.wireCode, i);
  });
  for (const c of [12, 99, 0xffffffff, -1, 1.5]) {
    const e = new k.KpsError(c, 'x');
    assert.equal(e.code, 'internal-error');
    assert.equal(e.wireCode, 11);
  }
  const tl = new k.KpsError('too-large', 'big', { maxDatagramPayloadSize: 1200, remote: true, reason: 'r' });
  assert.equal(tl.maxDatagramPayloadSize, 1200);
  assert.equal(tl.remote, true);
  assert.equal(tl.reason, 'r');
  assert.ok(tl instanceof Error);
  assert.throws(() => k.toWireCode('bogus'), TypeError);
  assert.throws(() => k.toWireCode(-1), TypeError);
  assert.throws(() => k.toWireCode(2 ** 32), TypeError);
  assert.equal(k.toWireCode(0xffffffff), 0xffffffff);
});

test('auth: binding and messages match the Go side; the reply is checked', async () => {
  const binding = k.fingerprintBinding(DIGEST, DIALER_DIGEST);
  assert.equal(toHexString(binding), BINDING);
  const signer = k.seedSigner(SEED);
  assert.equal(toHexString(signer.publicKey), SEED_KEY_HEX);
  assert.equal(toHexString(decodeZBase32Key(SEED_KEY_Z32)), SEED_KEY_HEX);
  assert.equal(toHexString(await k.authMessage(k.ROLE_DIALER, binding, signer)), DIALER_MSG);
  assert.equal(toHexString(await k.authMessage(k.ROLE_LISTENER, binding, signer)), LISTENER_MSG);
  assert.equal(k.AUTH_MSG_LEN, 105);

  const reply = fromHex(LISTENER_MSG);
  assert.equal(toHexString(k.parseListenerMessage(reply, binding)), SEED_KEY_HEX);

  const fails = (msg, code, re) =>
    assert.throws(
      () => k.parseListenerMessage(msg, binding),
      (e) => e instanceof k.KpsError && e.code === code && re.test(e.message),
    );
  fails(fromHex(DIALER_MSG), 'permission-denied', /wrong role/);
  const mode1 = reply.slice();
  mode1[8] = 1;
  fails(mode1, 'permission-denied', /binding mode/);
  const badSig = reply.slice();
  badSig[104] ^= 1;
  fails(badSig, 'permission-denied', /signature/);
  const otherBinding = k.fingerprintBinding(DIALER_DIGEST, DIGEST);
  assert.throws(() => k.parseListenerMessage(reply, otherBinding), /signature/);
  fails(reply.subarray(0, 104), 'protocol-error', /did not answer/);
  fails(new Uint8Array(105), 'protocol-error', /did not answer/);
  // A non-canonical S (S + L) must not verify, as in Go's VerifyStrict.
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  const sig = reply.slice(41);
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]);
  s += L;
  const bumped = reply.slice();
  for (let i = 0; i < 32; i++) bumped[41 + 32 + i] = Number((s >> BigInt(8 * i)) & 0xffn);
  fails(bumped, 'permission-denied', /signature/);
  // A small-order public key (the identity point) is refused.
  const identity = reply.slice();
  identity.set(new Uint8Array(32), 9);
  identity[9] = 1;
  fails(identity, 'permission-denied', /signature/);
});

test('auth: seeds must be 32 bytes; fresh keys differ', () => {
  assert.throws(() => k.seedSigner(new Uint8Array(31)), TypeError);
  assert.throws(() => k.seedSigner('x'.repeat(32)), TypeError);
  assert.notEqual(toHexString(k.seedSigner().publicKey), toHexString(k.seedSigner().publicKey));
});

test('pacing: at most 8 opens in flight; each release admits the next', async () => {
  const g = new k.OpenGate(8);
  const releases = [];
  let admitted = 0;
  for (let i = 0; i < 20; i++) {
    void g.acquire().then((r) => {
      admitted++;
      releases.push(r);
    });
  }
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(admitted, 8);
  releases[0]();
  releases[0](); // idempotent
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(admitted, 9);
  g.drain();
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(admitted, 20);
});
