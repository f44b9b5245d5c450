// Package dht runs a node of the BitTorrent Mainline DHT (BEP 5) and
// stores and finds Pkarr records on it as BEP 44 mutable items. This is
// how a device is found by its key alone: no server anyone runs, just the
// ten-million-node network every BitTorrent client already joins.
//
// The DHT protocol itself comes from anacrolix/dht. This package adds
// what keyhole needs on top: a lookup that returns as soon as a valid
// record is found (the library's own getput waits for the whole search),
// a put that reports how many nodes stored the item, strict verification
// of everything received, a bounded store with correct compare-and-swap
// rules, and a local testnet of real nodes for tests and demos.
package dht
