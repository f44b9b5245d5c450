// KPS addresses (SPEC 2) and certhashes (SPEC 3). The address is the only
// thing a dialer knows about the listener: the UDP endpoint for the
// synthesized ICE candidate and the certificate digest that is both the
// DTLS pin and the ICE password key.

import { base64UrlNoPad, decodeBase64UrlNoPad } from './bytes.js';

/** A parsed KPS address. */
export interface KpsAddress {
  /** The IP in canonical text form (as Go's netip prints it), no brackets. */
  readonly ip: string;
  /** 4 or 6: selects "IN IP4"/"IN IP6" in the synthesized answer. */
  readonly family: 4 | 6;
  /** UDP port, 1-65535. */
  readonly port: number;
  /** SHA-256 of the listener certificate's DER (32 bytes). */
  readonly digest: Uint8Array;
  /** The certhash as given (always canonical once parsed). */
  readonly certhash: string;
}

function invalid(what: string, why: string): never {
  throw new TypeError(`invalid KPS ${what}: ${why}`);
}

/**
 * Decodes a certhash: 'u' + base64url-nopad(0x12 0x20 || sha256). Anything
 * else (other multibases, other multihashes, other lengths, non-canonical
 * base64) is refused, because a pin that could be spelled two ways, or
 * name a weaker hash, is not a pin.
 */
export function parseCerthash(s: string): Uint8Array {
  if (typeof s !== 'string') throw new TypeError('certhash must be a string');
  if (s.length !== 47 || s[0] !== 'u') {
    invalid('certhash', `expected 'u' + 46 base64url characters (a sha2-256 multihash), got ${JSON.stringify(s.slice(0, 64))}`);
  }
  const b = decodeBase64UrlNoPad(s.slice(1));
  if (b === null) invalid('certhash', 'not canonical unpadded base64url');
  if (b.length !== 34 || b[0] !== 0x12 || b[1] !== 0x20) {
    invalid('certhash', 'not a sha2-256 multihash (0x12 0x20 + 32 bytes)');
  }
  return b.slice(2);
}

/** Encodes a 32-byte certificate digest as a certhash, for building addresses. */
export function encodeCerthash(digest: Uint8Array): string {
  if (!(digest instanceof Uint8Array) || digest.length !== 32) {
    throw new TypeError('certhash digest must be 32 bytes');
  }
  const mh = new Uint8Array(34);
  mh[0] = 0x12;
  mh[1] = 0x20;
  mh.set(digest, 2);
  return 'u' + base64UrlNoPad(mh);
}

/** Parses a dotted quad with Go netip's rules (no leading zeros), or null. */
function parseIPv4(s: string): number[] | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^[0-9]{1,3}$/.test(p) || (p.length > 1 && p[0] === '0')) return null;
    const v = Number(p);
    if (v > 255) return null;
    out.push(v);
  }
  return out;
}

/** Parses an IPv6 literal (no zone) into 8 groups, or null. */
function parseIPv6(s: string): number[] | null {
  if (s.length === 0 || s.length > 45) return null;
  let head = s;
  let tail4: number[] | null = null;
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    tail4 = parseIPv4(s.slice(lastColon + 1));
    if (tail4 === null) return null;
    // Keep the colon(s) before the dotted quad: "::1.2.3.4" -> "::".
    head = s.slice(0, lastColon + 1);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const want = tail4 === null ? 8 : 6;
  const groupsOf = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  let groups: number[];
  const dbl = head.indexOf('::');
  if (dbl >= 0) {
    if (head.indexOf('::', dbl + 1) >= 0) return null;
    const left = groupsOf(head.slice(0, dbl));
    const right = groupsOf(head.slice(dbl + 2));
    if (left === null || right === null) return null;
    const fill = want - left.length - right.length;
    if (fill < 1) return null;
    groups = [...left, ...new Array<number>(fill).fill(0), ...right];
  } else {
    const all = groupsOf(head);
    if (all === null || all.length !== want) return null;
    groups = all;
  }
  if (tail4 !== null) {
    groups.push((tail4[0]! << 8) | tail4[1]!, (tail4[2]! << 8) | tail4[3]!);
  }
  return groups;
}

/**
 * RFC 5952 text for 8 groups, the form Go's netip.Addr.String() gives, so
 * the answer SDP this side synthesizes is byte-identical to the Go
 * client's.
 */
function formatIPv6(g: number[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return hex(g.slice(0, bestStart)) + '::' + hex(g.slice(bestStart + bestLen));
}

/**
 * Parses `ip:port:certhash` or `[ipv6]:port:certhash` (SPEC 2). Throws
 * TypeError naming what is wrong. Accepts exactly what the Go side's
 * record.ParseKPSAddr accepts, except that the certhash must be
 * canonically encoded; IPv4-mapped IPv6 and zones are refused there too.
 */
export function parseAddress(addr: string): KpsAddress {
  if (typeof addr !== 'string') throw new TypeError('KPS address must be a string');
  const show = JSON.stringify(addr.length > 120 ? addr.slice(0, 120) + '…' : addr);
  let host: string;
  let rest: string;
  let bracketed = false;
  if (addr.startsWith('[')) {
    const end = addr.indexOf(']');
    if (end < 0 || addr[end + 1] !== ':') invalid('address', `${show}: expected [ipv6]:port:certhash`);
    host = addr.slice(1, end);
    rest = addr.slice(end + 2);
    bracketed = true;
  } else {
    const c = addr.indexOf(':');
    if (c < 0) invalid('address', `${show} is not <ip>:<port>:<certhash>`);
    host = addr.slice(0, c);
    rest = addr.slice(c + 1);
  }
  const c2 = rest.indexOf(':');
  if (c2 < 0) invalid('address', `${show} is not <ip>:<port>:<certhash>`);
  const portText = rest.slice(0, c2);
  const certhash = rest.slice(c2 + 1);
  if (!/^[0-9]{1,5}$/.test(portText)) invalid('address', `${show}: port must be decimal 1-65535`);
  const port = Number(portText);
  if (port < 1 || port > 65535) invalid('address', `${show}: port must be decimal 1-65535`);

  let ip: string;
  let family: 4 | 6;
  if (bracketed) {
    if (host.includes('%')) invalid('address', `${show}: IPv6 zones are not allowed`);
    const g = parseIPv6(host);
    if (g === null) invalid('address', `${show}: ${JSON.stringify(host)} is not an IPv6 address`);
    const mapped = g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff;
    if (mapped) invalid('address', `${show}: use the plain IPv4 form, not IPv4-mapped IPv6`);
    ip = formatIPv6(g);
    family = 6;
  } else {
    const v4 = parseIPv4(host);
    if (v4 === null) invalid('address', `${show}: ${JSON.stringify(host)} is not an IPv4 address (bracket IPv6 hosts)`);
    ip = v4.join('.');
    family = 4;
  }
  const digest = parseCerthash(certhash);
  return { ip, family, port, digest, certhash };
}

/** Formats an address back to text (IPv6 bracketed), for messages and tests. */
export function formatAddress(a: KpsAddress): string {
  const host = a.family === 6 ? `[${a.ip}]` : a.ip;
  return `${host}:${a.port}:${encodeCerthash(a.digest)}`;
}
