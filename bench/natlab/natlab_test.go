// Package natlab_test measures time to first byte across the NAT lab:
// for every pair of NAT types, a device is dialed by its key alone and
// the first echo comes back. It runs real keyhole processes in network
// namespaces (tests/natlab), so it needs root:
//
//	sudo go test -run '^$' -bench TimeToFirstByte -benchtime 1x -v ./bench/natlab/
//
// Each pair is dialed -dials times (fresh dialer process each time: a
// cold start, as a user running 'keyhole ping'); the table shows the
// median of: finding the record on the lab's DHT testnet, connecting
// (racing the ladder), and the first echo's round trip, and their sum.
package natlab_test

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/tests/natlab"
)

var dials = flag.Int("dials", 5, "dials per NAT pair")

func BenchmarkTimeToFirstByte(b *testing.B) {
	for range b.N {
		l := natlab.New(b, natlab.Options{})
		w := natlab.NewWorld(b, l)
		types := []natlab.NATType{natlab.None, natlab.FullCone, natlab.Restricted, natlab.PortRestricted, natlab.Symmetric}
		keys := map[natlab.NATType]string{}
		dialers := map[natlab.NATType]*natlab.Host{}
		for _, nt := range types {
			keys[nt] = w.Device(b, l.Private(nt, natlab.LinkOptions{}))
			dialers[nt] = l.Private(nt, natlab.LinkOptions{})
		}
		var out strings.Builder
		fmt.Fprintf(&out, "\n| dialer → device | path | record | connect | first echo | total (p50 of %d) |\n|---|---|---|---|---|---|\n", *dials)
		for _, from := range types {
			for _, to := range types {
				var rec, con, rtt, tot []time.Duration
				path := ""
				for range *dials {
					r := w.Ping(b, dialers[from], keys[to])
					if r.Err != nil {
						b.Fatalf("%s -> %s: %v\n%s", from, to, r.Err, r.Stderr)
					}
					path = r.Path
					rec, con, rtt = append(rec, r.Record), append(con, r.Connect), append(rtt, r.FirstRTT)
					tot = append(tot, r.Record+r.Connect+r.FirstRTT)
				}
				fmt.Fprintf(&out, "| %s → %s | %s | %s | %s | %s | %s |\n", from, to, path, med(rec), med(con), med(rtt), med(tot))
			}
		}
		b.Log(out.String())
	}
}

func med(xs []time.Duration) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2].Round(100 * time.Microsecond)
}
