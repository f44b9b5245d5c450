// Package dht runs a node of the BitTorrent Mainline DHT (BEP 5) and
// stores and finds Pkarr records on it as BEP 44 mutable items. This is
// how a device is found by its key alone: no server anyone runs, just the
// ten-million-node network every BitTorrent client already joins.
//
// Community nodes use the same network twice more. They store and fetch
// any signed item, salted so that one key can keep many, for clients that
// cannot join the DHT themselves, such as a browser. And they announce
// themselves under a well-known info-hash, the way BitTorrent peers
// announce a torrent, so that they find each other with no list anyone
// has to keep up to date.
//
// The DHT protocol itself comes from anacrolix/dht. This package adds
// what keyhole needs on top: a lookup that returns as soon as a valid
// item is found (the library's own getput waits for the whole search),
// a put that reports how many nodes stored the item, strict verification
// of everything received, bounded stores of items and announcements (the
// library keeps no announcements unless given a store, and its own would
// find only one service per machine), correct compare-and-swap rules,
// and a local testnet of real nodes for tests and demos.
package dht
