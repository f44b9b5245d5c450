// Public entry point of the KPS browser client: dial a keyhole listener
// by its KPS address and get streams and datagrams.

export { dial, DEFAULT_DIAL_TIMEOUT_MS, type DialOptions, type AuthOptions } from './dial.js';
export { Connection, type CloseInfo } from './connection.js';
export { Stream } from './stream.js';
export { Datagrams, MAX_DATAGRAM_PAYLOAD_SIZE } from './datagrams.js';
export { KpsError, type KpsErrorCode } from './errors.js';
export { parseAddress, parseCerthash, encodeCerthash, formatAddress, type KpsAddress } from './address.js';
export { seedSigner, type Signer } from './auth.js';
