package board

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MemoryMonitor tells the board how many bytes its table may use. The
// table's capacity follows it, so a board on a small machine evicts
// sooner instead of running out of memory. Tests inject a fixed budget.
type MemoryMonitor interface {
	Budget() uint64
}

// FixedMemory is a constant budget in bytes.
type FixedMemory uint64

// Budget implements MemoryMonitor.
func (f FixedMemory) Budget() uint64 { return uint64(f) }

// SystemMemory gives the board Fraction of the memory the kernel reports
// available (MemAvailable in /proc/meminfo), read at most once a second.
// Where that file does not exist it falls back to Fallback bytes.
type SystemMemory struct {
	Fraction float64
	Fallback uint64

	mu     sync.Mutex
	at     time.Time
	budget uint64
}

// Budget implements MemoryMonitor.
func (s *SystemMemory) Budget() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.at) < time.Second && s.budget > 0 {
		return s.budget
	}
	s.at = time.Now()
	avail, ok := memAvailable()
	if !ok {
		s.budget = s.Fallback
		return s.budget
	}
	s.budget = uint64(float64(avail) * s.Fraction)
	return s.budget
}

func memAvailable() (uint64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kib, err := strconv.ParseUint(fields[1], 10, 64)
			return kib * 1024, err == nil
		}
	}
	return 0, false
}
