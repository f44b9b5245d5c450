// Fixtures for the real-browser tests: Debian Chromium driven by
// playwright-core (never a downloaded browser), a page served from
// 127.0.0.1 that loads the bundle, and Go listeners started with the
// keyhole CLI. Everything binds to 127.0.0.1 and everything is bounded in
// time.

import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { webDir } from './internals.mjs';

const repoRoot = path.resolve(webDir, '..');
const tmpDirs = [];

function tmpDir(prefix) {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}

/** Removes the temporary directories made by these fixtures. */
export function cleanupTmp() {
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/**
 * The Chromium to drive: $CHROMIUM or /usr/bin/chromium. When missing,
 * returns a reason to skip, or throws under CI=true where a missing
 * browser must fail the run rather than silently test nothing.
 */
export function findChromium() {
  const exe = process.env.CHROMIUM || '/usr/bin/chromium';
  if (existsSync(exe)) return { exe, skip: false };
  const msg =
    `\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n` +
    `!!! KPS BROWSER TESTS SKIPPED: no Chromium at ${exe}\n` +
    `!!! install it (apt-get install -y chromium) or set CHROMIUM=/path/to/chrome\n` +
    `!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n`;
  if (process.env.CI === 'true') throw new Error(`CI=true and no Chromium at ${exe}: the browser tests cannot run`);
  process.stderr.write(msg);
  return { exe, skip: `no Chromium at ${exe} (see the banner on stderr)` };
}

/** The keyhole CLI: $KEYHOLE_BIN, or built once from the repository. */
export async function keyholeBinary() {
  if (process.env.KEYHOLE_BIN) return process.env.KEYHOLE_BIN;
  const out = path.join(tmpDir('kps-web-bin-'), 'keyhole');
  await promisify(execFile)('go', ['build', '-o', out, './cmd/keyhole'], {
    cwd: repoRoot,
    timeout: 300_000,
    maxBuffer: 16 << 20,
  });
  return out;
}

/**
 * Starts `keyhole listen --addr 127.0.0.1:0 --echo [--plain]` with a
 * fresh KEYHOLE_HOME and resolves with the address (first stdout line)
 * and, unless plain, the identity it proves (from stderr).
 */
export function startListener(bin, { plain = false } = {}) {
  const home = tmpDir('kps-web-home-');
  const args = ['listen', '--addr', '127.0.0.1:0', '--echo'];
  if (plain) args.push('--plain');
  const proc = spawn(bin, args, {
    // XDG_CONFIG_HOME too: the CLI finds its home there when it does not
    // read KEYHOLE_HOME, and nothing may touch the user's real keystore.
    env: { ...process.env, KEYHOLE_HOME: home, XDG_CONFIG_HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`keyhole listen did not start within 20 s; stderr:\n${stderr}`));
    }, 20_000);
    const maybeReady = () => {
      const nl = stdout.indexOf('\n');
      if (nl < 0) return;
      const addr = stdout.slice(0, nl).trim();
      let identity = null;
      if (!plain) {
        const m = /^identity: (\S+)$/m.exec(stderr);
        if (m === null) return; // printed right after the address
        identity = m[1];
      }
      clearTimeout(timer);
      proc.stdout.removeAllListeners('data');
      resolve({
        addr,
        identity,
        stderr: () => stderr,
        stop: () =>
          new Promise((res) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return res();
            const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
            proc.once('exit', () => {
              clearTimeout(t);
              res();
            });
            proc.kill('SIGTERM');
          }),
      });
    };
    proc.stdout.on('data', (d) => {
      stdout += d;
      maybeReady();
    });
    proc.stderr.on('data', (d) => {
      stderr += d;
      maybeReady();
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`keyhole listen exited (${code}) before printing its address; stderr:\n${stderr}`));
    });
  });
}

const PAGE = `<!doctype html>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>keyhole KPS test</title>
<script type="module">
  import * as kps from '/keyhole-kps.js';
  // Helpers the tests call from page.evaluate.
  const t = {
    async readAll(readable, limit = 256 << 20) {
      const reader = readable.getReader();
      const parts = [];
      let n = 0;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parts.push(value);
        n += value.length;
        if (n > limit) throw new Error('readAll: over limit');
      }
      const out = new Uint8Array(n);
      let o = 0;
      for (const p of parts) { out.set(p, o); o += p.length; }
      return out;
    },
    // Writes bytes and FIN on a new stream, reading the echo concurrently.
    async echo(conn, bytes) {
      const s = await conn.openStream();
      const reading = t.readAll(s.readable);
      const w = s.writable.getWriter();
      await w.write(bytes);
      await w.close();
      return reading;
    },
    // Deterministic, distinct payload i of n bytes.
    pattern(i, n) {
      const b = new Uint8Array(n);
      let x = (i + 1) * 2654435761 >>> 0;
      for (let j = 0; j < n; j++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; b[j] = x & 0xff; }
      return b;
    },
    equal(a, b) {
      if (a.length !== b.length) return false;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
      return true;
    },
    errInfo(e) {
      return {
        name: e && e.name, code: e && e.code, wireCode: e && e.wireCode, remote: e && e.remote,
        reason: e && e.reason, max: e && e.maxDatagramPayloadSize, message: String((e && e.message) || e),
        isKpsError: e instanceof kps.KpsError,
      };
    },
  };
  window.kps = kps;
  window.t = t;
  window.kpsReady = true;
</script>
`;

/** Serves the test page and the bundle (dist/keyhole-kps.js) on 127.0.0.1:0. */
export function serve() {
  const bundle = path.join(webDir, 'dist', 'keyhole-kps.js');
  if (!existsSync(bundle)) throw new Error('dist/keyhole-kps.js is missing: run `npm run build` first (npm test does)');
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    } else if (url.pathname === '/keyhole-kps.js' || url.pathname === '/keyhole-kps.js.map') {
      const file = path.join(webDir, 'dist', url.pathname.slice(1));
      if (!existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': url.pathname.endsWith('.js') ? 'text/javascript' : 'application/json' });
      res.end(readFileSync(file));
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}/`, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

/** Chromium flags: headless, no sandbox (root in CI), nothing phoning home. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Several pages run at once and each must keep its timers: a page that is
  // not in front would otherwise be throttled (timers aligned to seconds,
  // CPU budgets), and a proof of work or a timeout in it would stall.
  '--disable-background-timer-throttling',
  '--disable-backgrounding-occluded-windows',
  '--disable-renderer-backgrounding',
];

/**
 * Launches Chromium with a fresh profile and opens the test page; page
 * console errors are echoed to stderr to make failures readable.
 */
export async function openBrowser(exe, pageUrl) {
  const { chromium } = await import('playwright-core');
  const profile = tmpDir('kps-web-profile-');
  const xdg = tmpDir('kps-web-xdg-');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: exe,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
    // Chromium keeps crash-report state under XDG dirs even with a fresh
    // profile; keep that out of the real home too.
    env: { ...process.env, XDG_CONFIG_HOME: xdg, XDG_CACHE_HOME: xdg },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') process.stderr.write(`[page ${m.type()}] ${m.text()}\n`);
  });
  await page.goto(pageUrl, { timeout: 15_000 });
  await page.waitForFunction(() => window.kpsReady === true, null, { timeout: 15_000 });
  return { page, close: () => context.close() };
}
