package natlab

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on a locked OS thread switched into the named network
// namespace. Sockets fn creates stay in that namespace for their whole
// life, wherever they are used afterwards; goroutines fn starts do not
// inherit the namespace. The thread goes back to its original namespace
// before it is unlocked; if it cannot, it stays locked and the runtime
// discards it when the goroutine ends, so no other goroutine ever runs in
// the wrong namespace. A panic in fn is re-raised in the caller.
func inNetns(name string, fn func() error) error {
	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	go func() {
		var res result
		defer func() { done <- res }()
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			res.err = fmt.Errorf("natlab: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(netnsPath(name))
		if err != nil {
			runtime.UnlockOSThread()
			res.err = fmt.Errorf("natlab: namespace %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			res.err = fmt.Errorf("natlab: setns %s: %w", name, err)
			return
		}
		defer func() {
			if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
				res.err = errors.Join(res.err, fmt.Errorf("natlab: cannot leave namespace %s (thread discarded): %w", name, err))
				return
			}
			runtime.UnlockOSThread()
		}()
		defer func() {
			if v := recover(); v != nil {
				res.panicked, res.value = true, v
			}
		}()
		res.err = fn()
	}()
	res := <-done
	if res.panicked {
		panic(res.value)
	}
	return res.err
}

// lockExclusive takes f's lock for the lab's lifetime, without waiting.
func lockExclusive(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
}

// lockHeld reports whether another open file holds f's lock.
func lockHeld(f *os.File) (bool, error) {
	err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return false, unix.Flock(int(f.Fd()), unix.LOCK_UN)
}

// fileInode returns the inode of an open file: for a namespace file, the
// namespace's identity.
func fileInode(f *os.File) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// pathInode is fileInode by path, following links such as
// /proc/<pid>/ns/net.
func pathInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
