// Loads the library's internal modules into Node for the unit tests: the
// TypeScript sources are bundled in memory by esbuild (no files written,
// so test files running in parallel cannot race on an output path).

import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const entry = `
export * from './src/address.ts';
export * from './src/auth.ts';
export * from './src/bytes.ts';
export * from './src/errors.ts';
export * from './src/framing.ts';
export * from './src/pacing.ts';
export * from './src/sdp.ts';
export * from './src/mesh/errors.ts';
export * from './src/mesh/http.ts';
export * from './src/mesh/info.ts';
export * from './src/mesh/paid.ts';
export * from './src/mesh/peer.ts';
export * from './src/mesh/pow.ts';
export * from './src/mesh/room.ts';
export * from './src/mesh/turn.ts';
`;

/** The internal modules, bundled for Node. */
export async function loadInternals() {
  const out = await build({
    stdin: { contents: entry, resolveDir: webDir, loader: 'ts', sourcefile: 'internals.ts' },
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    write: false,
    logLevel: 'silent',
  });
  const code = out.outputFiles[0].text;
  return import('data:text/javascript;base64,' + Buffer.from(code).toString('base64'));
}

const Z32 = 'ybndrfg8ejkmcpqxot1uwisza345h769';

/** Decodes a 52-character z-base-32 key (as `keyhole listen` prints it) to 32 bytes. */
export function decodeZBase32Key(s) {
  if (typeof s !== 'string' || s.length !== 52) throw new Error(`not a z-base-32 key: ${s}`);
  const out = new Uint8Array(32);
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (const ch of s) {
    const v = Z32.indexOf(ch);
    if (v < 0) throw new Error(`bad z-base-32 character ${ch}`);
    acc = ((acc << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8 && o < 32) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
    }
  }
  return out;
}

/** Hex to bytes, for test vectors. */
export function fromHex(h) {
  return Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));
}

/** Bytes to hex, for assertions. */
export function toHexString(b) {
  return Buffer.from(b).toString('hex');
}
