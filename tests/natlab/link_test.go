package natlab

import (
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// lossSample is how many datagrams TestLoss sends over each link. For a
// true rate of 20% the measured one-way rate has a standard deviation of
// 1.3 points, so the ±8 point tolerance is six of them.
const (
	lossSample    = 1000
	lossTolerance = 8
)

// measureLoss sends lossSample datagrams from h to the reflector and
// returns the percentage lost on the way up (counted by the reflector)
// and of the answers, on the way down (counted by h).
func measureLoss(t *testing.T, h *Host, r *reflector) (up, down float64) {
	t.Helper()
	c := listen(t, h)
	before := r.received.Load()
	var answers int
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("read: %v", err)
				}
				return
			}
			answers++
		}
	})
	for i := range lossSample {
		if _, err := c.WriteToUDPAddrPort([]byte("who "+nonce()), r.mainAP); err != nil {
			t.Fatal(err)
		}
		// Paced, so that socket buffers never add loss of their own.
		if i%25 == 24 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	got := r.received.Load() - before
	up = 100 * float64(lossSample-got) / lossSample
	if got > 0 {
		down = 100 * float64(got-int64(answers)) / float64(got)
	}
	t.Logf("%s: %d sent, %d reached the reflector (%.1f%% lost up), %d answers came back (%.1f%% lost down)",
		h, lossSample, got, up, answers, down)
	return up, down
}

// TestLoss measures LossPercent on a clean and a 20% lossy link, in both
// directions, through a NAT.
func TestLoss(t *testing.T) {
	lab := New(t, Options{})
	r := newReflector(t, lab.Public(), lab.Public())
	clean := lab.Private(PortRestricted, LinkOptions{})
	lossy := lab.Private(PortRestricted, LinkOptions{LossPercent: 20})
	lossyPublic := lab.Private(None, LinkOptions{LossPercent: 20})

	if up, down := measureLoss(t, clean, r); up != 0 || down != 0 {
		t.Errorf("clean link lost %.1f%% up, %.1f%% down; want none", up, down)
	}
	for _, h := range []*Host{lossy, lossyPublic} {
		up, down := measureLoss(t, h, r)
		for _, got := range []float64{up, down} {
			if got < 20-lossTolerance || got > 20+lossTolerance {
				t.Errorf("%s: lost %.1f%% up, %.1f%% down; want 20±%d each", h, up, down, lossTolerance)
				break
			}
		}
	}
}

// TestLinkOptionsValidated checks that impossible impairments are refused
// rather than silently mangled.
func TestLinkOptionsValidated(t *testing.T) {
	t.Parallel()
	lab := New(t, Options{})
	h := lab.Public()
	for _, o := range []LinkOptions{{LossPercent: -1}, {LossPercent: 101}, {Delay: -time.Millisecond}} {
		if err := lab.impair(h.Name, "eth0", "p1", o); err == nil {
			t.Errorf("impair(%+v) succeeded, want an error", o)
		}
	}
}

// TestNetemAvailable reports whether this kernel can delay packets; the
// answer decides which of the two delay tests below runs.
func TestNetemAvailable(t *testing.T) {
	got := NetemAvailable()
	if got {
		t.Log("sch_netem is available: link delay is applied and measured")
	} else {
		t.Logf("sch_netem is NOT available (%v): link delay is skipped with a log line", netemErr)
	}
	if NetemAvailable() != got {
		t.Error("NetemAvailable changed its answer")
	}
	if netemNS != "" && slices.Contains(mustReadDir(t, netnsDir), netemNS) {
		t.Errorf("the netem probe left namespace %s behind", netemNS)
	}
}

func mustReadDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// minRTT is the smallest of five round trips from h to the reflector.
func minRTT(t *testing.T, c *net.UDPConn, r *reflector) time.Duration {
	best := time.Hour
	for range 5 {
		best = min(best, mustAsk(t, c, r.mainAP, "who").rtt)
	}
	return best
}

// TestDelay checks that Delay is added to each direction of the link.
func TestDelay(t *testing.T) {
	if !NetemAvailable() {
		t.Skipf("sch_netem is not available (%v); delay cannot be tested here", netemErr)
	}
	const delay = 40 * time.Millisecond
	lab := New(t, Options{})
	r := newReflector(t, lab.Public(), lab.Public())
	h := lab.Private(PortRestricted, LinkOptions{Delay: delay})
	rtt := minRTT(t, listen(t, h), r)
	t.Logf("%s: round trip %v with Delay %v", h, rtt, delay)
	if rtt < 2*delay || rtt > 2*delay+200*time.Millisecond {
		t.Errorf("round trip %v, want about %v (Delay in each direction)", rtt, 2*delay)
	}
}

// TestDelayWithoutNetem checks that on a kernel without netem a Delay is
// reported in the log, not silently dropped, and the lab still works.
func TestDelayWithoutNetem(t *testing.T) {
	if NetemAvailable() {
		t.Skip("sch_netem is available; TestDelay covers Delay")
	}
	var mu sync.Mutex
	var logged []string
	lab := New(t, Options{Logf: func(format string, args ...any) {
		t.Logf(format, args...)
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, format)
	}})
	r := newReflector(t, lab.Public(), lab.Public())
	h := lab.Private(PortRestricted, LinkOptions{Delay: 40 * time.Millisecond})
	mu.Lock()
	found := false
	for _, l := range logged {
		found = found || strings.Contains(l, "NOT applied")
	}
	mu.Unlock()
	if !found {
		t.Error(`no "NOT applied" line logged for a Delay without netem`)
	}
	if rtt := minRTT(t, listen(t, h), r); rtt > 40*time.Millisecond {
		t.Errorf("round trip %v although no delay could be applied", rtt)
	}
}
