// Property tests for the two parsers that see hostile input: the frame
// parser (every message a peer sends) and the address parser (whatever a
// user pastes). Random and mutated inputs must either parse to something
// well-formed or fail with a KpsError/TypeError that carries a message,
// and never anything else. Seeded, so a failure reproduces.

import test from 'node:test';
import assert from 'node:assert/strict';
import { loadInternals } from '../test-support/internals.mjs';

const k = await loadInternals();

/** xorshift32: deterministic, so a failing case can be replayed by seed. */
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

const SEED = Number(process.env.FUZZ_SEED ?? 20240601);
const N = Number(process.env.FUZZ_N ?? 20000);

function allowedFailure(e, input) {
  const ok = (e instanceof k.KpsError || e instanceof TypeError) && typeof e.message === 'string' && e.message.length > 0;
  assert.ok(ok, `unexpected ${e?.constructor?.name}: ${e?.message} for input ${JSON.stringify(String(input)).slice(0, 200)}`);
}

test('fuzz: parseFrame never throws anything but a KpsError, and decodes consistently', () => {
  const r = rng(SEED);
  for (let i = 0; i < N; i++) {
    const len = Math.floor(r() * (r() < 0.9 ? 12 : 300));
    const msg = new Uint8Array(len);
    for (let j = 0; j < len; j++) msg[j] = Math.floor(r() * 256);
    if (len > 0 && r() < 0.7) msg[0] = Math.floor(r() * 5); // mostly known types
    let f;
    try {
      f = k.parseFrame(msg);
    } catch (e) {
      allowedFailure(e, Array.from(msg));
      assert.ok(msg[0] > 3, 'only unknown types fail');
      assert.equal(e.code, 'protocol-error');
      continue;
    }
    if (len === 0) {
      assert.equal(f, null);
      continue;
    }
    switch (f.type) {
      case 'data':
        assert.equal(msg[0], 0);
        assert.deepEqual(f.payload, msg.subarray(1));
        break;
      case 'fin':
        assert.equal(msg[0], 1);
        break;
      case 'reset':
      case 'stop-sending': {
        assert.equal(msg[0], f.type === 'reset' ? 2 : 3);
        assert.ok(Number.isInteger(f.code) && f.code >= 0 && f.code <= 11, `code ${f.code}`);
        // Round trip through the encoder for in-registry codes.
        const again = k.parseFrame(k.encodeCode(msg[0], f.code));
        assert.equal(again.code, f.code);
        break;
      }
      default:
        assert.fail(`unknown frame kind ${f.type}`);
    }
  }
});

test('fuzz: parseFrame rejects non-bytes with TypeError', () => {
  for (const v of [undefined, null, 'abc', 42, {}, [0, 1], new ArrayBuffer(3)]) {
    assert.throws(() => k.parseFrame(v), TypeError);
  }
});

const CERTHASH = 'uEiAAAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHw';
const SEEDS = [
  `127.0.0.1:4242:${CERTHASH}`,
  `[2001:db8::1]:443:${CERTHASH}`,
  `[::1.2.3.4]:65535:${CERTHASH}`,
  `10.0.0.1:1:${CERTHASH}`,
  `[fe80:0:0:0:0:0:0:1]:9:${CERTHASH}`,
];
const ALPHABET = '0123456789abcdefABCDEF:.[]%u-_+/= xyzEi\u00e9\u0000';

function mutate(s, r) {
  const chars = Array.from(s);
  const edits = 1 + Math.floor(r() * 4);
  for (let e = 0; e < edits; e++) {
    const pos = Math.floor(r() * (chars.length + 1));
    const c = ALPHABET[Math.floor(r() * ALPHABET.length)];
    const op = r();
    if (op < 0.33) chars.splice(pos, 1);
    else if (op < 0.66) chars.splice(pos, 0, c);
    else chars[pos] = c;
  }
  return chars.join('');
}

test('fuzz: parseAddress accepts or throws TypeError, and what it accepts round-trips', () => {
  const r = rng(SEED ^ 0x5bd1e995);
  let accepted = 0;
  for (let i = 0; i < N; i++) {
    let input;
    if (r() < 0.8) {
      input = mutate(SEEDS[Math.floor(r() * SEEDS.length)], r);
    } else {
      const len = Math.floor(r() * 80);
      input = Array.from({ length: len }, () => ALPHABET[Math.floor(r() * ALPHABET.length)]).join('');
    }
    let a;
    try {
      a = k.parseAddress(input);
    } catch (e) {
      allowedFailure(e, input);
      continue;
    }
    accepted++;
    assert.ok(a.port >= 1 && a.port <= 65535);
    assert.equal(a.digest.length, 32);
    assert.ok(a.family === 4 || a.family === 6);
    // The canonical form parses to the same address and is a fixed point.
    const canon = k.formatAddress(a);
    const b = k.parseAddress(canon);
    assert.equal(b.ip, a.ip);
    assert.equal(b.port, a.port);
    assert.deepEqual(b.digest, a.digest);
    assert.equal(k.formatAddress(b), canon);
  }
  assert.ok(accepted > 0, 'some mutations should still be valid addresses');
});

test('fuzz: parseCerthash accepts exactly the canonical 47-character form', () => {
  const r = rng(SEED ^ 0x1234567);
  for (let i = 0; i < N; i++) {
    const input = mutate(CERTHASH, r);
    let d;
    try {
      d = k.parseCerthash(input);
    } catch (e) {
      allowedFailure(e, input);
      continue;
    }
    assert.equal(k.encodeCerthash(d), input, 'only canonical encodings are accepted');
  }
  for (const v of [undefined, null, 5, {}]) assert.throws(() => k.parseCerthash(v), TypeError);
});
