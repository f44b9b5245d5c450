//go:build !linux

package natlab

import (
	"errors"
	"os"
)

// errNotLinux is returned by the primitives that need Linux network
// namespaces. New skips (or, under CI, fails) before reaching them.
var errNotLinux = errors.New("natlab: network namespaces need Linux")

func inNetns(string, func() error) error { return errNotLinux }

func lockExclusive(*os.File) error { return errNotLinux }

func lockHeld(*os.File) (bool, error) { return false, errNotLinux }

func fileInode(*os.File) (uint64, error) { return 0, errNotLinux }

func pathInode(string) (uint64, error) { return 0, errNotLinux }
