// Package openhost speaks openhost's protocol so that keyhole hosts and
// clients interoperate with openhost's own daemon, CLI and browser
// extension: reaching a self-hosted HTTP app by the host's key.
//
// It holds the pieces both sides share:
//
//   - The cryptography: the allowlist hash that keeps paired client keys
//     out of any published record, and the channel binding that ties the
//     DTLS session to both identity keys (openhost spec 01 section 3 and
//     reference/openhost notes section 1).
//   - The HTTP-over-DataChannel framing of spec 01 sections 4 and 5, as
//     openhost's code does it: frames in the v2 shape (with a request
//     id) are written, and the legacy v1 shape is still read. Reader and
//     Writer stream frames so that no body is ever held whole, and
//     ParseFrame serves callers that gather data-channel messages into a
//     buffer. RequestHead and ResponseHead encode the HTTP/1.1 heads that
//     HEAD frames carry, refusing anything that could inject a header
//     line. The session frames (AUTH_*, ERROR) have their own helpers.
//
// The framing is only a codec. Which frame may follow which (AUTH_CLIENT
// first, ERROR then teardown), header rewriting, timeouts and
// demultiplexing by request id belong to the sessions built on it:
//
//   - Serve is the host side of one session, independent of WebRTC: the
//     channel binding (an unpaired or unproven client is sent nothing
//     and disconnected), then HTTP forwarding to one upstream with
//     request and response bodies streamed, never held whole, requests
//     multiplexed by request id, hop-by-hop and provenance fields
//     stripped, Host pinned, and a 502 for upstream failures.
package openhost
