// The community-node client in real Chromium against real `keyhole node`
// processes that found each other through a private DHT testnet: two
// pages that share only a room hash meet through two different nodes,
// a page picks the cheaper of two nodes, and TURN credentials from a node
// carry a relay-only connection. Everything is on 127.0.0.1.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cleanupTmp, findChromium, keyholeBinary, openBrowser, serve } from '../test-support/browser.mjs';
import { cleanupNodeHomes, startNode, startTestnet, waitForMesh } from '../test-support/nodes.mjs';

const chrome = findChromium(); // throws under CI=true when missing

describe('community nodes from Chromium', { skip: chrome.skip, timeout: 600_000 }, () => {
  let testnet;
  let node1;
  let node2;
  let pricey;
  let meshMs;
  let server;
  let browser;
  let pageB;

  before(
    async () => {
      const bin = await keyholeBinary();
      testnet = await startTestnet(bin, 20);
      // No --peer: the nodes must find each other through the DHT.
      [node1, node2, pricey, server] = await Promise.all([
        startNode(bin, { bootstrap: testnet.bootstrap }),
        startNode(bin, { bootstrap: testnet.bootstrap }),
        startNode(bin, { bootstrap: testnet.bootstrap, powBase: 22 }),
        serve(),
      ]);
      meshMs = await waitForMesh([node1.url, node2.url], 60_000);
      browser = await openBrowser(chrome.exe, server.url);
      pageB = await browser.page.context().newPage();
      pageB.on('pageerror', (e) => process.stderr.write(`[page B error] ${e.message}\n`));
      await pageB.goto(server.url, { timeout: 15_000 });
      await pageB.waitForFunction(() => window.kpsReady === true, null, { timeout: 15_000 });
    },
    { timeout: 420_000 },
  );

  after(async () => {
    await browser?.close();
    await server?.close();
    await Promise.all([node1?.stop(), node2?.stop(), pricey?.stop()]);
    await testnet?.stop();
    cleanupNodeHomes();
    cleanupTmp();
  });

  test('two pages sharing only a room hash connect through two meshed nodes', { timeout: 120_000 }, async (t) => {
    t.diagnostic(`the nodes listed each other in /nodes after ${meshMs} ms`);
    const hash = randomBytes(16).toString('hex');
    // Runs in each page: meet the other side, then say hello over the
    // data channel and wait for its hello. B joins 2.5 s after A, so A's
    // hellos go unanswered a few times first.
    const side = async ({ node, hash, name, delayMs }) => {
      await new Promise((r) => setTimeout(r, delayMs));
      const sizes = [];
      const t0 = performance.now();
      const peer = await kps.connectViaRoom(node, hash, {
        timeoutMs: 60_000,
        onSignal: (dir, m, n) => sizes.push({ dir, type: m.type, n }),
      });
      const connectMs = performance.now() - t0;
      const got = new Promise((resolve, reject) => {
        peer.channel.onmessage = (e) => resolve(e.data);
        setTimeout(() => reject(new Error('no message over the data channel within 10 s')), 10_000);
      });
      peer.channel.send(`hello from ${name} (${peer.id})`);
      const msg = await got;
      // Which path ICE chose, for the log.
      let path = null;
      const stats = await peer.pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) {
          const pair = stats.get(s.selectedCandidatePairId);
          const l = stats.get(pair.localCandidateId);
          const r = stats.get(pair.remoteCandidateId);
          path = `${l.candidateType}/${l.protocol} ${l.address}:${l.port} -> ${r.candidateType} ${r.address}:${r.port}`;
        }
      });
      const out = { id: peer.id, peerId: peer.peerId, label: peer.channel.label, msg, sizes, connectMs, path };
      // Let the other side read our hello before closing.
      await new Promise((r) => setTimeout(r, 500));
      peer.pc.close();
      return out;
    };
    const [a, b] = await Promise.all([
      browser.page.evaluate(side, { node: node1.url, hash, name: 'A', delayMs: 0 }),
      pageB.evaluate(side, { node: node2.url, hash, name: 'B', delayMs: 2500 }),
    ]);
    for (const [n, r] of [
      ['A', a],
      ['B', b],
    ]) {
      const out = r.sizes.filter((s) => s.dir === 'out');
      const byType = {};
      for (const s of out) (byType[s.type] ??= []).push(s.n);
      t.diagnostic(`page ${n}: connected in ${r.connectMs.toFixed(0)} ms over ${r.path}; posts by type (bytes): ${JSON.stringify(byType)}`);
      for (const s of r.sizes) assert.ok(s.n <= 1024, `${s.dir} ${s.type} is ${s.n} bytes`);
    }
    assert.equal(a.peerId, b.id);
    assert.equal(b.peerId, a.id);
    assert.equal(a.msg, `hello from B (${b.id})`);
    assert.equal(b.msg, `hello from A (${a.id})`);
    assert.equal(a.label, 'keyhole');
    // Exactly one side offered: the one with the smaller id.
    const offerer = a.id < b.id ? a : b;
    const answerer = offerer === a ? b : a;
    assert.ok(offerer.sizes.some((s) => s.dir === 'out' && s.type === 'offer'));
    assert.ok(!answerer.sizes.some((s) => s.dir === 'out' && s.type === 'offer'));
    assert.ok(answerer.sizes.some((s) => s.dir === 'out' && s.type === 'answer'));
    assert.ok(a.sizes.filter((s) => s.dir === 'out' && s.type === 'hello').length >= 2, 'A said hello again while alone');
  });

  test('alone in a room: connectViaRoom times out clearly and stops posting', { timeout: 60_000 }, async () => {
    const hash = randomBytes(16).toString('hex');
    const r = await browser.page.evaluate(
      async ({ node, other, hash }) => {
        // A listener on the other node sees the hellos through the mesh.
        const heard = [];
        const sub = kps.subscribe(other, hash, (data) => heard.push({ at: performance.now(), data }));
        await sub.ready;
        const t0 = performance.now();
        let err = null;
        try {
          await kps.connectViaRoom(node, hash, { timeoutMs: 3500 });
        } catch (e) {
          err = { name: e.name, message: e.message };
        }
        const failedAt = performance.now();
        await new Promise((r) => setTimeout(r, 2500));
        sub.close();
        return {
          err,
          ms: failedAt - t0,
          before: heard.filter((h) => h.at <= failedAt).map((h) => JSON.parse(h.data).type),
          after: heard.filter((h) => h.at > failedAt + 500).length,
        };
      },
      { node: node1.url, other: node2.url, hash },
    );
    assert.equal(r.err?.name, 'TimeoutError', JSON.stringify(r.err));
    assert.match(r.err.message, /no peer appeared/);
    assert.ok(r.ms >= 3400 && r.ms < 5000, `rejected after ${r.ms} ms`);
    assert.ok(r.before.length >= 3 && r.before.every((t) => t === 'hello'), `heard ${r.before}`);
    assert.equal(r.after, 0, 'no posts after the timeout');
  });

  test('a subscription on one node gets posts made on the other exactly as posted', { timeout: 60_000 }, async (t) => {
    const bodies = ['plain', 'two\nlines', '\nleading and trailing newlines\n\n', ' spaced: data: x', 'UTF-8 é ✓ 🙂', 'z'.repeat(1024)];
    const r = await pageB.evaluate(
      async ({ from, to, hash, bodies }) => {
        const got = [];
        const sub = kps.subscribe(to, hash, (data, id) => got.push({ data, id }), { timeoutMs: 10_000 });
        await sub.ready;
        const t0 = performance.now();
        const posted = [];
        for (const b of bodies) posted.push(await kps.post(from, hash, b));
        const deadline = performance.now() + 10_000;
        while (got.length < bodies.length && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        const ms = performance.now() - t0;
        sub.close();
        return { got, posted, ms };
      },
      { from: node1.url, to: node2.url, hash: randomBytes(8).toString('hex'), bodies },
    );
    t.diagnostic(`${bodies.length} posts through the mesh in ${r.ms.toFixed(0)} ms`);
    assert.deepEqual(
      r.got.map((g) => g.data),
      bodies,
    );
    assert.deepEqual(
      r.got.map((g) => g.id),
      r.posted.map((p) => p.id),
      'a post keeps its id across the mesh',
    );
  });

  test('pickNodes prefers the node with the lower price', { timeout: 60_000 }, async (t) => {
    const r = await browser.page.evaluate(
      async ({ cheap, dear, hash }) => {
        const t0 = performance.now();
        const picked = await kps.pickNodes([dear, cheap], { timeoutMs: 5000 });
        const pickMs = performance.now() - t0;
        // And the pick is usable: post through it with its challenge.
        const t1 = performance.now();
        const posted = await kps.post(picked[0].fetchedFrom, hash, 'cheap post', { info: picked[0] });
        return {
          order: picked.map((i) => ({ from: i.fetchedFrom, difficulty: i.difficulty, base: i.base_difficulty, load: i.load })),
          pickMs,
          postMs: performance.now() - t1,
          posted,
        };
      },
      { cheap: node1.url, dear: pricey.url, hash: randomBytes(8).toString('hex') },
    );
    t.diagnostic(`pickNodes ${r.pickMs.toFixed(0)} ms: ${JSON.stringify(r.order)}; post via the pick ${r.postMs.toFixed(0)} ms`);
    assert.equal(r.order.length, 2);
    assert.equal(r.order[0].from, node1.url + '/');
    assert.equal(r.order[1].from, pricey.url + '/');
    assert.ok(r.order[1].base >= 22, `the --pow-base 22 node advertises ${r.order[1].base}`);
    assert.ok(r.order[0].difficulty < r.order[1].difficulty);
    assert.match(r.posted.id, /^[0-9a-f]{32}$/);
  });

  test('TURN credentials from a node carry a relay-only connection', { timeout: 60_000 }, async (t) => {
    const r = await browser.page.evaluate(async (node) => {
      const t0 = performance.now();
      // One credential per side: a node caps allocations per credential.
      const [ice1, ice2] = await Promise.all([kps.turnCredentials(node), kps.turnCredentials(node)]);
      const credMs = performance.now() - t0;
      const p1 = new RTCPeerConnection({ iceServers: ice1, iceTransportPolicy: 'relay' });
      const p2 = new RTCPeerConnection({ iceServers: ice2, iceTransportPolicy: 'relay' });
      const types = [];
      const wire = (from, to) => {
        from.onicecandidate = (e) => {
          if (e.candidate && e.candidate.candidate) {
            types.push(/ typ (\w+)/.exec(e.candidate.candidate)?.[1]);
            to.addIceCandidate(e.candidate).catch(() => {});
          }
        };
      };
      wire(p1, p2);
      wire(p2, p1);
      const ch1 = p1.createDataChannel('relay');
      const ch2 = new Promise((resolve) => (p2.ondatachannel = (e) => resolve(e.channel)));
      await p1.setLocalDescription();
      await p2.setRemoteDescription(p1.localDescription);
      await p2.setLocalDescription();
      await p1.setRemoteDescription(p2.localDescription);
      const opened = (ch) => (ch.readyState === 'open' ? null : new Promise((r) => (ch.onopen = r)));
      const timeout = new Promise((_, rej) => setTimeout(() => rej(new Error(`no relay connection within 20 s (${p1.iceConnectionState})`)), 20_000));
      const c2 = await Promise.race([ch2, timeout]);
      await Promise.race([Promise.all([opened(ch1), opened(c2)]), timeout]);
      const connectMs = performance.now() - t0 - credMs;
      const recv = (ch) => new Promise((r) => (ch.onmessage = (e) => r(e.data)));
      const at2 = recv(c2);
      const at1 = recv(ch1);
      ch1.send('ping over TURN');
      c2.send('pong over TURN');
      const msgs = await Promise.race([Promise.all([at2, at1]), timeout]);
      let pair = null;
      const stats = await p1.getStats();
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) {
          const p = stats.get(s.selectedCandidatePairId);
          pair = [stats.get(p.localCandidateId), stats.get(p.remoteCandidateId)].map((c) => `${c.candidateType} ${c.address}:${c.port}`);
        }
      });
      p1.close();
      p2.close();
      return { ice1, types, msgs, pair, credMs, connectMs };
    }, node1.url);
    t.diagnostic(`credentials ${r.credMs.toFixed(0)} ms, relay connection ${r.connectMs.toFixed(0)} ms, pair ${JSON.stringify(r.pair)}`);
    assert.ok(r.ice1.some((s) => s.username && s.credential), JSON.stringify(r.ice1));
    assert.ok(r.types.length > 0 && r.types.every((x) => x === 'relay'), `candidates: ${r.types}`);
    assert.deepEqual(r.msgs, ['ping over TURN', 'pong over TURN']);
    assert.match(r.pair[0], /^relay 127\.0\.0\.1:/);
    assert.match(r.pair[1], /^relay 127\.0\.0\.1:/);
  });
  test('the README chat page: two tabs on two nodes meet and talk', { timeout: 120_000 }, async (t) => {
    const site = await serveWebDir();
    const room = `readme-${randomBytes(4).toString('hex')}`;
    const ctx = browser.page.context();
    const [c, d] = await Promise.all([ctx.newPage(), ctx.newPage()]);
    try {
      for (const p of [c, d]) p.on('pageerror', (e) => process.stderr.write(`[chat page error] ${e.message}\n`));
      const open = (p, node) =>
        p.goto(`${site.url}examples/room.html?node=${encodeURIComponent(node)}&room=${room}&auto=1`, { timeout: 15_000 });
      const t0 = Date.now();
      await Promise.all([open(c, node1.url), open(d, node2.url)]);
      await Promise.all([c, d].map((p) => p.waitForSelector('body[data-connected="true"]', { timeout: 90_000 })));
      t.diagnostic(`both tabs connected ${Date.now() - t0} ms after opening`);
      assert.match(await c.textContent('#status'), new RegExp(`through ${node1.url}`));
      assert.match(await d.textContent('#status'), new RegExp(`through ${node2.url}`));
      await c.fill('#text', 'hello from tab C');
      await c.press('#text', 'Enter');
      await d.waitForFunction(() => document.getElementById('log').textContent.includes('them: hello from tab C'), null, { timeout: 10_000 });
      await d.fill('#text', 'hi back from D');
      await d.press('#text', 'Enter');
      await c.waitForFunction(() => document.getElementById('log').textContent.includes('them: hi back from D'), null, { timeout: 10_000 });
    } finally {
      await Promise.all([c.close(), d.close()]);
      await site.close();
    }
  });
});

/** Serves web/ as python3 -m http.server would (what the README says), on 127.0.0.1:0. */
async function serveWebDir() {
  const http = await import('node:http');
  const fs = await import('node:fs');
  const path = await import('node:path');
  const { webDir } = await import('../test-support/internals.mjs');
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.map': 'application/json' };
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    const file = path.join(webDir, path.normalize(rel));
    if (!file.startsWith(webDir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
    res.end(fs.readFileSync(file));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => new Promise((r) => server.close(() => r())) };
}
