// Package resolve turns a key into its current record and keeps a
// device's own record published.
//
// The Resolver races the DHT against Pkarr relays, verifies every answer,
// keeps the newest valid one, never accepts a record older than one it
// has already seen, and caches by the record's TTL. It answers within a
// bounded time even when some sources are down or slow. The Publisher
// puts the device's record on the DHT and the relays, again whenever it
// changes, and on a schedule so it never fades from the DHT.
package resolve
