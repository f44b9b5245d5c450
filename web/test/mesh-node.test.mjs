// The community-node client from Node against a real `keyhole node`
// (bootstrapped from a private DHT testnet): the node refuses posts
// without work, with forged or spent work, or over 1 KiB, with the
// statuses of node/PROTOCOL.md, and accepts what this client sends.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { keyholeBinary } from '../test-support/browser.mjs';
import { loadInternals } from '../test-support/internals.mjs';
import { cleanupNodeHomes, startNode, startTestnet } from '../test-support/nodes.mjs';

const k = await loadInternals();

describe('community node: proof of work and post rules against the Go node', { timeout: 180_000 }, () => {
  let testnet;
  let node;

  before(
    async () => {
      const bin = await keyholeBinary();
      testnet = await startTestnet(bin, 20);
      node = await startNode(bin, { bootstrap: testnet.bootstrap });
    },
    { timeout: 360_000 },
  );

  after(async () => {
    await node?.stop();
    await testnet?.stop();
    cleanupNodeHomes();
  });

  /** A raw POST from Node, so the test controls the proof exactly. */
  async function rawPost(endpoint, body, pow) {
    const headers = { Accept: 'application/json', 'Content-Type': 'text/plain; charset=utf-8' };
    if (pow !== undefined) headers['X-Keyhole-Pow'] = pow;
    const res = await fetch(`${node.url}/${endpoint}`, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // leave null: asserted below
    }
    return { status: res.status, json, text };
  }

  /** A fresh challenge and a solution for endpoint and body at the node's price. */
  async function solved(endpoint, body) {
    const info = await k.nodeInfo(node.url);
    const nonce = await k.solve(info.token, endpoint, body, info.difficulty);
    return { info, header: k.powHeader(info.token, nonce), nonce };
  }

  test('GET / is a valid advertisement', async () => {
    const info = await k.nodeInfo(node.url);
    assert.match(info.node, /^[ybndrfg8ejkmcpqxot1uwisza345h769]{52}$/);
    assert.ok(info.difficulty >= 14, `difficulty ${info.difficulty} below the default base 14`);
    assert.ok(info.turn.length > 0, 'a node advertises TURN');
    assert.equal(info.fetchedFrom, node.url + '/');
  });

  test('posting with no work is refused with 428 and a fresh challenge', async () => {
    const room = `room/${randomBytes(8).toString('hex')}`;
    const r = await rawPost(room, 'no work');
    assert.equal(r.status, 428, r.text);
    assert.match(r.json?.error ?? '', /proof of work/);
    assert.equal(typeof r.json.token, 'string');
    assert.ok(Number.isInteger(r.json.difficulty));
    // The refusal's challenge is enough to succeed.
    const nonce = await k.solve(r.json.token, room, 'no work', r.json.difficulty);
    const ok = await rawPost(room, 'no work', k.powHeader(r.json.token, nonce));
    assert.equal(ok.status, 202, ok.text);
    assert.match(ok.json.id, /^[0-9a-f]{32}$/);
    assert.equal(ok.json.subscribers, 0);
  });

  test('a spent solution is refused with 409; moved to another body, 403', async () => {
    const room = `room/${randomBytes(8).toString('hex')}`;
    const { header } = await solved(room, 'once');
    const first = await rawPost(room, 'once', header);
    assert.equal(first.status, 202, first.text);
    const again = await rawPost(room, 'once', header);
    assert.equal(again.status, 409, again.text);
    assert.match(again.json.error, /already spent/);
    const moved = await rawPost(room, 'twice', header);
    assert.equal(moved.status, 403, moved.text);
  });

  test('forged, malformed and insufficient proofs are refused (403, 400, 403)', async () => {
    const room = `room/${randomBytes(8).toString('hex')}`;
    const { info } = await solved(room, 'x');
    // Same time, another MAC: not issued by this node.
    const raw = Buffer.from(info.token, 'base64url');
    raw[23] ^= 1;
    const forged = raw.toString('base64url');
    const nf = await k.solve(forged, room, 'x', info.difficulty);
    const f = await rawPost(room, 'x', k.powHeader(forged, nf));
    assert.equal(f.status, 403, f.text);
    assert.match(f.json.error, /not issued by this node/);
    for (const bad of [`${info.token}`, `${info.token}.01`, `${info.token}.-1`, `x.1`, `${info.token}.9007199254740992`]) {
      const r = await rawPost(room, 'x', bad);
      assert.equal(r.status, 400, `${bad}: ${r.text}`);
    }
    // A nonce whose digest falls short of the price.
    const binding = k.powBinding(room, 'x');
    let weak = 0;
    while (k.leadingZeroBits(k.powDigest(info.token, binding, weak)) >= info.difficulty) weak++;
    const w = await rawPost(room, 'x', k.powHeader(info.token, weak));
    assert.equal(w.status, 403, w.text);
    assert.match(w.json.error, /not enough work/);
  });

  test('posts over 1 KiB (413), with CR or NUL, or empty (400) are refused even with valid work', async () => {
    const room = `room/${randomBytes(8).toString('hex')}`;
    const big = 'x'.repeat(1025);
    const { header } = await solved(room, big);
    const r = await rawPost(room, big, header);
    assert.equal(r.status, 413, r.text);
    assert.match(r.json.error, /larger than 1024/);
    for (const body of ['a\r\nb', 'a\0b', '']) {
      const s = await solved(room, body);
      const x = await rawPost(room, body, s.header);
      assert.equal(x.status, 400, `${JSON.stringify(body)}: ${x.text}`);
    }
    // 1024 bytes exactly is fine.
    const max = 'y'.repeat(1024);
    const m = await rawPost(room, max, (await solved(room, max)).header);
    assert.equal(m.status, 202, m.text);
    // And the library refuses the bad ones itself, before any work.
    await assert.rejects(k.post(node.url, room.slice(5), big), RangeError);
  });

  test('the library: post, reuse of the challenge, TURN credentials, /nodes', async (t) => {
    const hash = randomBytes(8).toString('hex');
    k.forgetChallenges();
    const t0 = performance.now();
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await k.post(node.url, hash, `post ${i}`));
    t.diagnostic(`5 posts (price rising with each) took ${(performance.now() - t0).toFixed(0)} ms`);
    for (const r of results) assert.match(r.id, /^[0-9a-f]{32}$/);
    assert.equal(new Set(results.map((r) => r.id)).size, 5);
    const ice = await k.turnCredentials(node.url);
    const turn = ice.find((s) => s.urls.some((u) => u.startsWith('turn:')));
    assert.ok(turn, JSON.stringify(ice));
    assert.match(turn.username, /^\d+:/);
    assert.equal(typeof turn.credential, 'string');
    const nodes = await k.nodesOf(node.url);
    assert.ok(Array.isArray(nodes));
  });
});
