// Public entry point of the keyhole browser client: dial a keyhole
// listener by its KPS address and get streams and datagrams, or meet a
// peer through the community nodes' rooms.

export { dial, DEFAULT_DIAL_TIMEOUT_MS, type DialOptions, type AuthOptions } from './dial.js';
export { Connection, type CloseInfo } from './connection.js';
export { Stream } from './stream.js';
export { Datagrams, MAX_DATAGRAM_PAYLOAD_SIZE } from './datagrams.js';
export { KpsError, type KpsErrorCode } from './errors.js';
export { parseAddress, parseCerthash, encodeCerthash, formatAddress, type KpsAddress } from './address.js';
export { seedSigner, type Signer } from './auth.js';

// Community nodes (node/PROTOCOL.md): rooms for signaling, TURN
// credentials, proof of work, and choosing the cheapest node.
export { NodeError, type NodeErrorCode } from './mesh/errors.js';
export {
  nodeInfo,
  pickNodes,
  nodesOf,
  compareNodes,
  type NodeInfo,
  type NodeInfoOptions,
  type PickNodesOptions,
  type NodesOfOptions,
} from './mesh/info.js';
export { solve, powBinding, powDigest, powHeader, leadingZeroBits, MAX_NONCE, type SolveOptions } from './mesh/pow.js';
export { forgetChallenges, DEFAULT_MAX_POW_BITS, type PaidOptions } from './mesh/paid.js';
export {
  post,
  subscribe,
  checkPostBody,
  checkRoomHash,
  MAX_POST_BYTES,
  type PostResult,
  type Subscription,
  type SubscribeOptions,
} from './mesh/room.js';
export { turnCredentials } from './mesh/turn.js';
export { connectViaRoom, parseSignal, type RoomPeer, type RoomPeerOptions, type SignalMessage } from './mesh/peer.js';
