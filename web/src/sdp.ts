// WebRTC-direct signalling without a signalling server (SPEC 5.2): the
// browser makes a real offer, swaps in ICE credentials derived from the
// certhash, and synthesizes the listener's answer from the address. The
// text must match kps/sdp.go synthesizeAnswer byte for byte.

import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import type { KpsAddress } from './address.js';
import { base64StdNoPad, toHex, utf8 } from './bytes.js';

/** Label prefixed to the ufrag in the ICE password derivation (SPEC 5.2). */
export const ICE_PWD_LABEL = 'kps-ice-pwd-v1:';

/**
 * A fresh ICE ufrag: 9 random bytes as lower-case hex (72 bits), so it is
 * a per-connection demux key made only of ice-chars every KPS listener
 * accepts (libdatachannel refuses '-' and '_').
 */
export function newUfrag(): string {
  const b = new Uint8Array(9);
  crypto.getRandomValues(b);
  return toHex(b);
}

/**
 * The ICE password both sides derive from the certhash digest:
 * base64-std-nopad(HMAC-SHA256(digest, "kps-ice-pwd-v1:" + ufrag)). Only a
 * holder of the address passes STUN MESSAGE-INTEGRITY, so a listener
 * never answers probes that lack it.
 */
export function icePassword(digest: Uint8Array, ufrag: string): string {
  if (digest.length !== 32) throw new TypeError('certhash digest must be 32 bytes');
  return base64StdNoPad(hmac(sha256, digest, utf8(ICE_PWD_LABEL + ufrag)));
}

/** The a=fingerprint value for a digest: upper-case, colon-separated hex. */
export function sdpFingerprint(digest: Uint8Array): string {
  return Array.from(digest, (b) => b.toString(16).toUpperCase().padStart(2, '0')).join(':');
}

/**
 * The listener's answer, built from the address alone: ICE-lite, DTLS
 * passive, one host candidate, and the certhash as the fingerprint the
 * browser pins the DTLS certificate to.
 */
export function synthesizeAnswer(addr: KpsAddress, ufrag: string, pwd: string): string {
  const fam = addr.family === 4 ? 'IP4' : 'IP6';
  const any = addr.family === 4 ? '0.0.0.0' : '::';
  const lines = [
    'v=0',
    `o=- 0 0 IN ${fam} ${any}`,
    's=-',
    't=0 0',
    'a=ice-lite',
    `m=application ${addr.port} UDP/DTLS/SCTP webrtc-datachannel`,
    `c=IN ${fam} ${addr.ip}`,
    'a=mid:0',
    `a=ice-ufrag:${ufrag}`,
    `a=ice-pwd:${pwd}`,
    `a=fingerprint:sha-256 ${sdpFingerprint(addr.digest)}`,
    'a=setup:passive',
    'a=sctp-port:5000',
    'a=max-message-size:1048576',
    `a=candidate:1 1 UDP 1 ${addr.ip} ${addr.port} typ host`,
  ];
  return lines.join('\r\n') + '\r\n';
}

/**
 * Replaces every a=ice-ufrag and a=ice-pwd line of the browser's offer, so
 * the credentials the browser uses are the ones the listener derives.
 * Throws if the offer has neither line (nothing could then connect).
 */
export function mungeOffer(sdp: string, ufrag: string, pwd: string): string {
  let ufrags = 0;
  let pwds = 0;
  const out = sdp.replace(/^a=ice-(ufrag|pwd):[^\r\n]*/gm, (_line, which: string) => {
    if (which === 'ufrag') {
      ufrags++;
      return `a=ice-ufrag:${ufrag}`;
    }
    pwds++;
    return `a=ice-pwd:${pwd}`;
  });
  if (ufrags === 0 || pwds === 0) throw new Error('kps: the browser offer has no ICE credentials to replace');
  return out;
}

/**
 * The SHA-256 fingerprint of this side's DTLS certificate, read from its
 * own description. It is the dialer half of the keyhole channel binding
 * (the Go side hashes the certificate the browser presented in DTLS).
 */
export function sha256Fingerprint(sdp: string): Uint8Array {
  const m = /^a=fingerprint:sha-256 ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31})\s*$/im.exec(sdp);
  if (m === null) throw new Error('kps: the local description has no a=fingerprint:sha-256 line');
  return Uint8Array.from(m[1]!.split(':'), (h) => parseInt(h, 16));
}
