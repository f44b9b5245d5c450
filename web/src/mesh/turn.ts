// TURN credentials from a node: the relay of last resort when two peers
// cannot reach each other directly, paid for in work like a post.

import { NodeError } from './errors.js';
import { nodeBase } from './http.js';
import { paidPost, type PaidOptions } from './paid.js';

/**
 * Gets short-lived credentials for the node's STUN/TURN server, ready for
 * RTCConfiguration.iceServers: one entry for the STUN URIs, one for the
 * TURN URIs with the credentials. They expire after the node's ttl
 * (an hour by default), so fetch them per session, not once.
 */
export async function turnCredentials(nodeUrl: string, opts: PaidOptions = {}): Promise<RTCIceServer[]> {
  const base = nodeBase(nodeUrl);
  const a = await paidPost(nodeUrl, base, 'token', new Uint8Array(0), [200], opts);
  const o = a.body as { username?: unknown; password?: unknown; uris?: unknown } | null;
  if (
    typeof o?.username !== 'string' ||
    typeof o.password !== 'string' ||
    !Array.isArray(o.uris) ||
    !o.uris.every((u) => typeof u === 'string')
  ) {
    throw new NodeError('malformed', nodeUrl, 'POST /token answered without username, password and a list of uris');
  }
  const uris = o.uris as string[];
  const stun = uris.filter((u) => u.startsWith('stun:') || u.startsWith('stuns:'));
  const turn = uris.filter((u) => u.startsWith('turn:') || u.startsWith('turns:'));
  if (turn.length === 0) throw new NodeError('malformed', nodeUrl, 'POST /token answered no turn: URI');
  const servers: RTCIceServer[] = [];
  if (stun.length > 0) servers.push({ urls: stun });
  servers.push({ urls: turn, username: o.username, credential: o.password });
  return servers;
}
