// Fixtures for tests against real community nodes: a private DHT
// (`keyhole dht testnet`) and `keyhole node` processes bootstrapped from
// it, each with a fresh home. Everything binds to 127.0.0.1, every wait
// is bounded, and stop() ends only the process it started.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const tmpDirs = [];

function freshHome() {
  const d = mkdtempSync(path.join(os.tmpdir(), 'kh-web-node-'));
  tmpDirs.push(d);
  return d;
}

/** Removes the homes made by these fixtures. */
export function cleanupNodeHomes() {
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/**
 * Spawns bin with args and a fresh KEYHOLE_HOME/XDG_CONFIG_HOME, and
 * resolves once ready(stdout) returns a value, with that value and a
 * stop() that sends SIGTERM (SIGKILL after 5 s).
 */
function startProcess(bin, args, what, ready, waitMs = 30_000) {
  const home = freshHome();
  const proc = spawn(bin, args, {
    env: { ...process.env, KEYHOLE_HOME: home, XDG_CONFIG_HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const stop = () =>
    new Promise((res) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return res();
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      proc.once('exit', () => {
        clearTimeout(t);
        res();
      });
      proc.kill('SIGTERM');
    });
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      proc.kill('SIGKILL');
      reject(new Error(`${what} did not start within ${waitMs} ms; stdout:\n${stdout}\nstderr:\n${stderr}`));
    }, waitMs);
    proc.stdout.on('data', (d) => {
      stdout += d;
      if (done) return;
      const v = ready(stdout);
      if (v === undefined) return;
      done = true;
      clearTimeout(timer);
      resolve({ value: v, stop, stderr: () => stderr, pid: proc.pid, exited: () => proc.exitCode !== null || proc.signalCode !== null });
    });
    proc.stderr.on('data', (d) => {
      stderr += d;
    });
    proc.once('error', (e) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`${what}: ${e.message}`));
    });
    proc.once('exit', (code, signal) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code ?? signal}) before it was ready; stderr:\n${stderr}`));
    });
  });
}

/**
 * Starts `keyhole dht testnet --nodes n --json` and resolves with its
 * bootstrap addresses; the testnet runs until stop().
 */
export async function startTestnet(bin, n = 20) {
  const p = await startProcess(bin, ['dht', 'testnet', '--nodes', String(n), '--json'], 'keyhole dht testnet', (out) => {
    // The JSON is indented over several lines: wait for all of it.
    try {
      return JSON.parse(out);
    } catch {
      return undefined;
    }
  });
  const bootstrap = p.value.bootstrap;
  if (!Array.isArray(bootstrap) || bootstrap.length === 0) throw new Error(`testnet printed no bootstrap: ${JSON.stringify(p.value)}`);
  return { bootstrap, stop: p.stop, stderr: p.stderr };
}

/**
 * Starts `keyhole node` on 127.0.0.1 (HTTP, TURN and DHT on port 0)
 * bootstrapped from the testnet, and resolves with its base URL (the
 * first stdout line).
 */
export async function startNode(bin, { bootstrap, powBase, announceInterval = '1s', extra = [] } = {}) {
  const args = ['node', '--addr', '127.0.0.1:0', '--turn-addr', '127.0.0.1:0', '--dht-addr', '127.0.0.1:0'];
  if (bootstrap !== undefined) args.push('--bootstrap', bootstrap.join(','));
  if (powBase !== undefined) args.push('--pow-base', String(powBase));
  if (announceInterval !== null) args.push('--announce-interval', announceInterval);
  args.push(...extra);
  const p = await startProcess(bin, args, 'keyhole node', (out) => {
    const nl = out.indexOf('\n');
    return nl < 0 ? undefined : out.slice(0, nl).trim();
  });
  if (!/^https?:\/\/127\.0\.0\.1:\d+\/?$/.test(p.value)) {
    await p.stop();
    throw new Error(`keyhole node printed ${JSON.stringify(p.value)} as its first line, not its base URL; stderr:\n${p.stderr()}`);
  }
  return { url: p.value.replace(/\/$/, ''), stop: p.stop, stderr: p.stderr, exited: p.exited };
}

/** GET url as JSON from Node, bounded; resolves with {status, body}. */
export async function getJson(url, timeoutMs = 5000) {
  const res = await fetch(url, { headers: { Accept: 'application/json' }, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

/**
 * Waits, polling /nodes every 500 ms, until each node lists every other
 * one: they found each other through the DHT. Resolves with the time it
 * took; rejects with what each node listed when waitMs runs out.
 */
export async function waitForMesh(urls, waitMs = 60_000) {
  const t0 = Date.now();
  const strip = (u) => u.replace(/\/$/, '');
  let last = {};
  while (Date.now() - t0 < waitMs) {
    const lists = await Promise.all(
      urls.map((u) =>
        getJson(`${u}/nodes`)
          .then((r) => (Array.isArray(r.body) ? r.body.map(strip) : []))
          .catch(() => []),
      ),
    );
    last = Object.fromEntries(urls.map((u, i) => [u, lists[i]]));
    if (urls.every((u, i) => urls.every((o) => o === u || lists[i].includes(strip(o))))) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`nodes did not find each other through the DHT within ${waitMs} ms; /nodes: ${JSON.stringify(last)}`);
}
