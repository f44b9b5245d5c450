// Unit tests of the community-node client without a browser or a Go
// node: the proof of work against the Go implementation's vectors, the
// post rules, answer validation, the signaling message parser, and the
// request logic (pickNodes ordering, one re-solve after a refused proof)
// against tiny in-process HTTP mocks of a node.

import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { loadInternals, toHexString, webDir } from '../test-support/internals.mjs';

const k = await loadInternals();

// Printed by the Go implementation (node/pow): smallest nonces.
const vectors = JSON.parse(readFileSync(path.join(webDir, '..', 'node', 'pow', 'testdata', 'vectors.json'), 'utf8'));
const TOKEN = vectors[0].token;
const NODE_KEY = 'ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u';

test('pow: solve reproduces every Go vector (binding, smallest nonce, digest)', async () => {
  assert.ok(vectors.length >= 4);
  for (const v of vectors) {
    const name = `${v.endpoint} ${v.bits} bits`;
    assert.equal(toHexString(k.powBinding(v.endpoint, v.body)), v.binding, name);
    const nonce = await k.solve(v.token, v.endpoint, v.body, v.bits);
    assert.equal(nonce, v.nonce, name);
    const d = k.powDigest(v.token, k.powBinding(v.endpoint, v.body), nonce);
    assert.equal(toHexString(d), v.digest, name);
    assert.ok(k.leadingZeroBits(d) >= v.bits, name);
    // Smallest: every earlier nonce falls short (Go's Solve scans from 0).
    for (let n = 0; n < Math.min(nonce, 2000); n++) {
      assert.ok(k.leadingZeroBits(k.powDigest(v.token, k.powBinding(v.endpoint, v.body), n)) < v.bits, `${name}: nonce ${n}`);
    }
    // A body given as bytes is the same request.
    assert.equal(await k.solve(v.token, v.endpoint, new TextEncoder().encode(v.body), v.bits), v.nonce, name);
  }
});

test('pow: the binding covers the endpoint and the exact body', () => {
  const a = toHexString(k.powBinding('room/0123456789abcdef', 'x'));
  assert.notEqual(a, toHexString(k.powBinding('room/0123456789abcdeg', 'x')));
  assert.notEqual(a, toHexString(k.powBinding('room/0123456789abcdef', 'x\n')));
  // SHA-256(endpoint || "\n" || body), as the Go side computes it.
  assert.equal(toHexString(k.powBinding('token', '')), vectors[0].binding);
});

test('pow: leadingZeroBits, nonce encoding up to 2^53-1, header form', () => {
  assert.equal(k.leadingZeroBits(Uint8Array.of(0x80, 0)), 0);
  assert.equal(k.leadingZeroBits(Uint8Array.of(0x01, 0)), 7);
  assert.equal(k.leadingZeroBits(Uint8Array.of(0, 0x10)), 11);
  assert.equal(k.leadingZeroBits(new Uint8Array(32)), 256);
  assert.equal(k.powHeader(TOKEN, 577), `${TOKEN}.577`);
  assert.equal(k.powHeader(TOKEN, Number.MAX_SAFE_INTEGER), `${TOKEN}.9007199254740991`);
  assert.throws(() => k.powHeader(TOKEN, -1), TypeError);
  assert.throws(() => k.powHeader(TOKEN, 2 ** 53), TypeError);
  assert.throws(() => k.powHeader(TOKEN, 1.5), TypeError);
  // High and low halves of the nonce both reach the digest.
  const b = k.powBinding('token', '');
  assert.notEqual(toHexString(k.powDigest(TOKEN, b, 2 ** 32)), toHexString(k.powDigest(TOKEN, b, 0)));
  assert.notEqual(toHexString(k.powDigest(TOKEN, b, 2 ** 52)), toHexString(k.powDigest(TOKEN, b, 2 ** 32)));
});

test('pow: malformed tokens and difficulties are refused before any work', async () => {
  for (const t of ['', TOKEN.slice(1), TOKEN + 'A', TOKEN.slice(0, -1) + '+', TOKEN.slice(0, -1) + '=']) {
    await assert.rejects(k.solve(t, 'token', '', 1), TypeError, JSON.stringify(t));
  }
  for (const bits of [-1, 65, 1.5, NaN]) await assert.rejects(k.solve(TOKEN, 'token', '', bits), TypeError, String(bits));
  await assert.rejects(k.solve(TOKEN, 'token', '', 1, { start: -1 }), TypeError);
});

test('pow: a start nonce gives another valid solution', async () => {
  const v = vectors[2];
  const n = await k.solve(v.token, v.endpoint, v.body, v.bits, { start: v.nonce + 1 });
  assert.ok(n > v.nonce);
  assert.ok(k.leadingZeroBits(k.powDigest(v.token, k.powBinding(v.endpoint, v.body), n)) >= v.bits);
});

test('pow: solving yields to the event loop and stops on abort', async (t) => {
  const ac = new AbortController();
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 5);
  setTimeout(() => ac.abort(new Error('enough')), 200);
  const t0 = performance.now();
  // 48 bits: never found in this time.
  await assert.rejects(k.solve(TOKEN, 'token', '', 48, { signal: ac.signal }), /enough/);
  const ms = performance.now() - t0;
  clearInterval(ticker);
  t.diagnostic(`aborted after ${ms.toFixed(0)} ms, ${ticks} timer ticks ran meanwhile`);
  assert.ok(ms < 1000, `abort took ${ms} ms`);
  assert.ok(ticks >= 5, `only ${ticks} timer ticks ran while solving`);
  const pre = AbortSignal.abort(new Error('already'));
  await assert.rejects(k.solve(TOKEN, 'token', '', 8, { signal: pre }), /already/);
});

test('posts: 1 to 1024 bytes of UTF-8, no CR, no NUL, checked before any request', async () => {
  assert.equal(k.checkPostBody('x'.repeat(1024)).length, 1024);
  assert.equal(k.checkPostBody('é'.repeat(512)).length, 1024); // 2 bytes each
  assert.equal(k.checkPostBody('line one\nline two').length, 17);
  assert.throws(() => k.checkPostBody('x'.repeat(1025)), RangeError);
  assert.throws(() => k.checkPostBody('é'.repeat(513)), /1026/);
  assert.throws(() => k.checkPostBody(''), RangeError);
  assert.throws(() => k.checkPostBody('a\r\nb'), /CR/);
  assert.throws(() => k.checkPostBody('a\0b'), /NUL/);
  assert.throws(() => k.checkPostBody(Uint8Array.of(0xc3)), /UTF-8/);
  assert.throws(() => k.checkPostBody(42), TypeError);
  // post() refuses before touching the network (port 9 is never a node here).
  for (const body of ['x'.repeat(1025), 'a\rb', '']) {
    await assert.rejects(k.post('http://127.0.0.1:9', 'room-hash-1234', body), (e) => e instanceof TypeError || e instanceof RangeError);
  }
});

test('room hashes and node URLs are checked', async () => {
  for (const h of ['abcdefgh', 'A'.repeat(128), 'a-b_c-d_0123']) assert.equal(k.checkRoomHash(h), h);
  for (const h of ['abcdefg', 'A'.repeat(129), 'abcdefgh/', 'abc defgh', 'abcdefgh=', '../../../x']) {
    assert.throws(() => k.checkRoomHash(h), TypeError, h);
  }
  assert.equal(k.nodeBase('http://127.0.0.1:8080'), 'http://127.0.0.1:8080/');
  assert.equal(k.nodeBase('https://example.org/keyhole'), 'https://example.org/keyhole/');
  for (const u of ['', '127.0.0.1:8080', 'ftp://x', 'http://x/?a=1', 'http://u:p@x/', 42]) {
    assert.throws(() => k.nodeBase(u), TypeError, String(u));
  }
  await assert.rejects(k.nodeInfo('not a url'), TypeError);
});

function goodInfo(over = {}) {
  return {
    node: NODE_KEY,
    url: 'http://127.0.0.1:1',
    token: TOKEN,
    token_ttl: 120,
    difficulty: 14,
    base_difficulty: 14,
    load: 0.1,
    cpu: 0.1,
    mem: 0.01,
    posts: 0,
    stun: ['stun:127.0.0.1:3478'],
    turn: ['turn:127.0.0.1:3478?transport=udp'],
    version: 'test',
    ...over,
  };
}

test('nodeInfo answers are validated field by field', () => {
  const ok = k.parseNodeInfo('n', goodInfo(), 'http://127.0.0.1:1/', 5);
  assert.equal(ok.difficulty, 14);
  assert.equal(ok.fetchedFrom, 'http://127.0.0.1:1/');
  assert.equal(ok.fetchedAt, 5);
  assert.deepEqual(ok.turn, ['turn:127.0.0.1:3478?transport=udp']);
  const minimal = k.parseNodeInfo('n', { node: NODE_KEY, token: TOKEN, difficulty: 3, load: 0 }, 'b', 0);
  assert.equal(minimal.token_ttl, 120);
  assert.deepEqual(minimal.stun, []);
  const bad = [
    null,
    [],
    'text',
    goodInfo({ node: 'abc' }),
    goodInfo({ node: undefined }),
    goodInfo({ token: 'short' }),
    goodInfo({ difficulty: 65 }),
    goodInfo({ difficulty: 1.5 }),
    goodInfo({ difficulty: '14' }),
    goodInfo({ load: 2 }),
    goodInfo({ load: -0.1 }),
    goodInfo({ load: undefined }),
    goodInfo({ stun: 'stun:x' }),
    goodInfo({ turn: [1] }),
    goodInfo({ token_ttl: 0 }),
  ];
  for (const b of bad) {
    assert.throws(
      () => k.parseNodeInfo('n', b, 'b', 0),
      (e) => e instanceof k.NodeError && e.code === 'malformed' && /GET \//.test(e.message),
      JSON.stringify(b),
    );
  }
});

test('signaling messages: only well-formed ones are taken from the room', () => {
  const A = '0123456789abcdef';
  const B = 'fedcba9876543210';
  assert.deepEqual(k.parseSignal(JSON.stringify({ from: A, type: 'hello' })), { from: A, type: 'hello' });
  assert.deepEqual(k.parseSignal(JSON.stringify({ from: A, to: B, type: 'hello', extra: 1 })), { from: A, type: 'hello', to: B });
  assert.deepEqual(k.parseSignal(JSON.stringify({ from: A, to: B, type: 'offer', sdp: 'v=0' })), {
    from: A,
    to: B,
    type: 'offer',
    sdp: 'v=0',
  });
  assert.deepEqual(k.parseSignal(JSON.stringify({ from: A, to: B, type: 'candidate', candidate: 'candidate:1', sdpMid: '0', sdpMLineIndex: 0 })), {
    from: A,
    to: B,
    type: 'candidate',
    candidate: 'candidate:1',
    sdpMid: '0',
    sdpMLineIndex: 0,
  });
  const bad = [
    'not json',
    'null',
    '[]',
    JSON.stringify({ from: 'ABC', type: 'hello' }),
    JSON.stringify({ from: A, type: 'bye' }),
    JSON.stringify({ from: A, type: 'offer', sdp: 'v=0' }), // no to
    JSON.stringify({ from: A, to: B, type: 'answer' }),
    JSON.stringify({ from: A, to: 'x', type: 'hello' }),
    JSON.stringify({ from: A, to: B, type: 'candidate', candidate: 'c', sdpMLineIndex: -1 }),
    JSON.stringify({ from: A, to: B, type: 'candidate', candidate: 'c', sdpMid: 3 }),
  ];
  for (const b of bad) assert.equal(k.parseSignal(b), null, b);
});

/** A tiny HTTP server on 127.0.0.1 answering with handler(req, body). */
async function mock(handler) {
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => handler(req, Buffer.concat(chunks), res));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

function json(res, status, v) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(v));
}

test('pickNodes: cheapest first (difficulty, then load), dead and bad nodes dropped, bounded in time', async (t) => {
  const specs = [
    { name: 'busy', difficulty: 18, load: 0.1 },
    { name: 'cheap-loaded', difficulty: 14, load: 0.6 },
    { name: 'cheap-idle', difficulty: 14, load: 0.05 },
    { name: 'mid', difficulty: 16, load: 0.0 },
    { name: 'hangs' },
    { name: 'malformed' },
    { name: 'error' },
  ];
  const accepts = [];
  const servers = await Promise.all(
    specs.map((s) =>
      mock((req, _body, res) => {
        accepts.push(req.headers.accept);
        if (s.name === 'hangs') return; // never answers
        if (s.name === 'malformed') return json(res, 200, { hello: 'world' });
        if (s.name === 'error') return json(res, 503, { error: 'shutting down' });
        json(res, 200, goodInfo({ difficulty: s.difficulty, load: s.load, version: s.name }));
      }),
    ),
  );
  const closed = await mock(() => {});
  await closed.close(); // a port nobody listens on any more
  try {
    const urls = [...servers.map((s) => s.url), closed.url];
    const t0 = performance.now();
    const picked = await k.pickNodes(urls, { timeoutMs: 500 });
    const ms = performance.now() - t0;
    t.diagnostic(`pickNodes over ${urls.length} nodes (one hanging) took ${ms.toFixed(0)} ms`);
    assert.deepEqual(
      picked.map((i) => i.version),
      ['cheap-idle', 'cheap-loaded', 'mid', 'busy'],
    );
    assert.equal(picked[0].fetchedFrom, servers[2].url + '/');
    assert.ok(ms < 2000, `took ${ms} ms`);
    assert.ok(accepts.every((a) => /application\/json/.test(a)), 'every request asks for JSON');
    const two = await k.pickNodes([servers[0].url, servers[3].url, servers[0].url + '/'], { timeoutMs: 500, count: 1 });
    assert.deepEqual(
      two.map((i) => i.version),
      ['mid'],
    );
    await assert.rejects(
      k.pickNodes([servers[4].url, closed.url], { timeoutMs: 300 }),
      (e) => e instanceof k.NodeError && /no node answered/.test(e.message),
    );
    await assert.rejects(k.pickNodes([]), TypeError);
  } finally {
    await Promise.all(servers.map((s) => s.close()));
  }
});

test('nodeInfo: a refusal carries the node error line; a hang times out', async () => {
  const s = await mock((req, _b, res) => {
    if (req.url === '/slow/') return;
    json(res, 429, { error: 'too many requests from your address; slow down' });
  });
  try {
    await assert.rejects(
      k.nodeInfo(s.url),
      (e) => e instanceof k.NodeError && e.code === 'refused' && e.status === 429 && e.detail === 'too many requests from your address; slow down',
    );
    await assert.rejects(k.nodeInfo(s.url + '/slow', { timeoutMs: 200 }), (e) => e instanceof k.NodeError && e.code === 'timeout');
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('user gave up')), 50);
    await assert.rejects(k.nodeInfo(s.url + '/slow', { signal: ac.signal }), /user gave up/);
  } finally {
    await s.close();
  }
});

test('post: solves at the advertised price, re-solves once with the challenge of a refusal', async () => {
  // A mock node that checks proofs like node/pow and refuses the first
  // one as stale, handing out a new token at a higher difficulty.
  const TOKEN2 = TOKEN.slice(0, -4) + 'AAAA';
  const seen = [];
  let refuseFirst = true;
  const s = await mock((req, body, res) => {
    if (req.method === 'GET' && req.url === '/') return json(res, 200, goodInfo({ difficulty: 6 }));
    const [token, nonce] = String(req.headers['x-keyhole-pow'] ?? '').split('.');
    const endpoint = req.url.slice(1);
    const work = token ? k.leadingZeroBits(k.powDigest(token, k.powBinding(endpoint, new Uint8Array(body)), Number(nonce))) : -1;
    seen.push({ endpoint, token, nonce, work, body: body.toString(), accept: req.headers.accept });
    if (refuseFirst) {
      refuseFirst = false;
      return json(res, 403, { error: 'pow: the token has expired; fetch a fresh one from / and solve again', token: TOKEN2, difficulty: 9 });
    }
    if (endpoint.startsWith('room/')) {
      if (token !== TOKEN2 || work < 9) return json(res, 403, { error: 'pow: not enough work', token: TOKEN2, difficulty: 9 });
      return json(res, 202, { id: 'ab'.repeat(16), subscribers: 3 });
    }
    if (endpoint === 'token') {
      return json(res, 200, { username: '1:ab', password: 'pw', ttl: 3600, uris: ['stun:127.0.0.1:1', 'turn:127.0.0.1:1?transport=udp'] });
    }
    json(res, 404, { error: 'no such endpoint' });
  });
  try {
    k.forgetChallenges();
    const r = await k.post(s.url, 'room-hash-1234', 'hello\nroom');
    assert.deepEqual(r, { id: 'ab'.repeat(16), subscribers: 3 });
    assert.equal(seen.length, 2);
    assert.equal(seen[0].token, TOKEN);
    assert.ok(seen[0].work >= 6, `first proof has ${seen[0].work} bits`);
    assert.equal(seen[1].token, TOKEN2);
    assert.ok(seen[1].work >= 9);
    assert.equal(seen[1].body, 'hello\nroom');
    assert.ok(seen.every((x) => /application\/json/.test(x.accept)));
    // The refusal's challenge is kept: the next post needs no GET /, and
    // the same body under the same token gets another nonce, not a replay.
    const again = await k.post(s.url, 'room-hash-1234', 'hello\nroom');
    assert.equal(again.subscribers, 3);
    assert.equal(seen[2].token, TOKEN2);
    assert.notEqual(seen[2].nonce, seen[1].nonce);
    const ice = await k.turnCredentials(s.url);
    assert.deepEqual(ice, [
      { urls: ['stun:127.0.0.1:1'] },
      { urls: ['turn:127.0.0.1:1?transport=udp'], username: '1:ab', credential: 'pw' },
    ]);
    assert.equal(seen.at(-1).endpoint, 'token');
  } finally {
    await s.close();
  }
});

test('post: a second refusal, a non-proof error and a too high price reject with the node line', async () => {
  let posts = 0;
  let difficulty = 4;
  const s = await mock((req, body, res) => {
    if (req.method === 'GET') return json(res, 200, goodInfo({ difficulty }));
    posts++;
    if (body.toString() === 'too big') return json(res, 413, { error: 'the post is larger than 1024 bytes; split it or shorten it' });
    json(res, 409, { error: 'pow: this solution was already spent; solve a new one', token: TOKEN, difficulty: 4 });
  });
  try {
    k.forgetChallenges();
    await assert.rejects(k.post(s.url, 'room-hash-1234', 'x'), (e) => {
      assert.ok(e instanceof k.NodeError);
      assert.equal(e.code, 'refused');
      assert.equal(e.status, 409);
      assert.equal(e.detail, 'pow: this solution was already spent; solve a new one');
      assert.match(e.message, /409 pow: this solution was already spent/);
      return true;
    });
    assert.equal(posts, 2, 'solved and posted exactly twice');
    posts = 0;
    await assert.rejects(k.post(s.url, 'room-hash-1234', 'too big'), (e) => e.status === 413 && /larger than 1024/.test(e.detail));
    assert.equal(posts, 1, 'no retry for a refusal that is not about the proof');
    difficulty = 30;
    k.forgetChallenges();
    posts = 0;
    await assert.rejects(k.post(s.url, 'room-hash-1234', 'x'), (e) => e.code === 'too-expensive' && /30 bits/.test(e.message));
    assert.equal(posts, 0, 'nothing posted when the price is over maxBits');
  } finally {
    await s.close();
  }
});
