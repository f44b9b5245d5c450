//go:build !unix

package node

import "time"

// cpuTime is not measured here; the price then follows memory alone.
func cpuTime() time.Duration { return 0 }
