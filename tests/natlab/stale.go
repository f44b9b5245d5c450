package natlab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// netnsDir is where `ip netns add` pins named namespaces.
const netnsDir = "/run/netns"

// lockDir holds one lock file per live lab, <id>.lock, flock'ed by its
// owner for the lab's whole life. The kernel drops the lock when the owner
// dies, however it dies, which is how a later run tells a crashed lab's
// namespaces from those of a lab that is merely old (a long test in
// another package running in parallel).
const lockDir = "/run/keyhole-natlab"

// staleAge is how old namespaces that match the lab's naming but have no
// lock file at all must be before New removes them. A lab never leaves
// such namespaces (it removes its namespaces before its lock file), so
// they were made by hand or their lock directory was deleted; the delay
// keeps New away from anything that might still be in use.
const staleAge = 3 * time.Minute

// nsPattern matches every namespace name a lab makes: kh-<id>-<role>,
// where role is sw (the switch), p<n> (a public host), r<n> and h<n> (the
// router and host of private LAN n) or nt (NetemAvailable's probe).
// Nothing else is ever removed.
var nsPattern = regexp.MustCompile(`^kh-([0-9a-f]{6})-(sw|nt|[prh][0-9]{1,3})$`)

func netnsPath(name string) string { return filepath.Join(netnsDir, name) }

func lockPath(id string) string { return filepath.Join(lockDir, id+".lock") }

// acquireID picks an unused lab id and holds its lock file.
func acquireID() (string, *os.File, error) {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return "", nil, fmt.Errorf("natlab: %w", err)
	}
	for range 16 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", nil, fmt.Errorf("natlab: %w", err)
		}
		id := hex.EncodeToString(b[:])
		if _, err := os.Stat(netnsPath("kh-" + id + "-sw")); err == nil {
			continue
		}
		f, err := os.OpenFile(lockPath(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("natlab: %w", err)
		}
		if err := lockExclusive(f); err != nil {
			f.Close()
			os.Remove(f.Name())
			return "", nil, fmt.Errorf("natlab: lock %s: %w", f.Name(), err)
		}
		// For a human wondering whose lab this is.
		fmt.Fprintf(f, "pid %d\n", os.Getpid())
		return id, f, nil
	}
	return "", nil, errors.New("natlab: no free lab id after 16 tries")
}

// releaseID removes the lock file while still holding the lock, so that no
// other run ever sees it unlocked and mistakes the lab for a crashed one.
func releaseID(f *os.File) error {
	errRemove := os.Remove(f.Name())
	if errors.Is(errRemove, fs.ErrNotExist) {
		errRemove = nil
	}
	return errors.Join(errRemove, f.Close())
}

// ownerGone reports whether the lab with this id is no longer running;
// newest is when its newest namespace (or its lock file) was made.
func ownerGone(id string, newest time.Time) bool {
	f, err := os.Open(lockPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return time.Since(newest) > staleAge
	}
	if err != nil {
		return false
	}
	defer f.Close()
	held, err := lockHeld(f)
	return err == nil && !held
}

// removeStale deletes the namespaces and lock files of labs whose process
// died without cleaning up (a panic, a go test timeout, kill -9). It only
// ever touches names matching nsPattern. Failures are logged, not
// returned: a leftover from someone else's crash is no reason to fail this
// run.
func removeStale(logf func(string, ...any)) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		logf("natlab: cannot look for stale namespaces: %v", err)
	}
	type lab struct {
		names  []string
		newest time.Time
	}
	labs := map[string]*lab{}
	for _, e := range entries {
		m := nsPattern.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		fi, err := os.Stat(netnsPath(e.Name()))
		if err != nil {
			continue
		}
		l := labs[m[1]]
		if l == nil {
			l = &lab{newest: fi.ModTime()}
			labs[m[1]] = l
		}
		l.names = append(l.names, e.Name())
		if fi.ModTime().After(l.newest) {
			l.newest = fi.ModTime()
		}
	}
	for id, l := range labs {
		if !ownerGone(id, l.newest) {
			continue
		}
		slices.Sort(l.names)
		err := removeNamespaces(l.names)
		os.Remove(lockPath(id))
		logf("natlab: removed %d namespaces left by crashed lab kh-%s: %s", len(l.names), id, strings.Join(l.names, " "))
		if err != nil {
			logf("%v", err)
		}
	}
	// Lock files whose owner died before making any namespace.
	locks, _ := os.ReadDir(lockDir)
	for _, e := range locks {
		id, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok || labs[id] != nil {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleAge && ownerGone(id, fi.ModTime()) {
			os.Remove(lockPath(id))
		}
	}
}

// removeNamespaces kills whatever still runs inside the namespaces (a
// process a test started and never waited for would otherwise keep a
// namespace, and its veths, alive) and deletes them. The test binary
// itself is never killed, even if one of its threads sits in a namespace.
func removeNamespaces(names []string) error {
	var errs []error
	held := map[uint64]*os.File{}
	var existing []string
	for _, name := range names {
		f, err := os.Open(netnsPath(name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("natlab: %w", err))
			continue
		}
		// Held open until the end, so the namespace, and with it its
		// inode number, cannot be reused by someone else's lab before
		// the second sweep below.
		defer f.Close()
		ino, err := fileInode(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("natlab: %s: %w", name, err))
			continue
		}
		held[ino] = f
		existing = append(existing, name)
	}
	killIn(held)
	if len(existing) > 0 {
		// One process for all; -force goes on past a failure.
		var script strings.Builder
		for _, name := range existing {
			fmt.Fprintf(&script, "netns del %s\n", name)
		}
		if _, err := run(script.String(), "ip", "-force", "-batch", "-"); err != nil {
			for _, name := range existing {
				// Gone anyway means removed meanwhile by a concurrent
				// cleanup of a crashed lab.
				if _, statErr := os.Stat(netnsPath(name)); !errors.Is(statErr, fs.ErrNotExist) {
					errs = append(errs, fmt.Errorf("natlab: namespace %s survived: %w", name, err))
				}
			}
		}
	}
	// `ip netns exec` opens the namespace file, then joins: one that
	// opened it just before the delete joins only now.
	killIn(held)
	return errors.Join(errs...)
}

// killIn SIGKILLs every process but this one whose network namespace is
// one of those held.
func killIn(held map[uint64]*os.File) {
	if len(held) == 0 {
		return
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		ino, err := pathInode(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err != nil || held[ino] == nil {
			continue
		}
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
	}
}
