//go:build unix

package bench

import (
	"fmt"
	"syscall"
	"time"
)

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and
// returns the new soft limit.
func RaiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("get open file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise open file limit to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}

// checkFileLimit fails with advice when conns connections (plus a few
// for the process itself) would not fit under the open file limit.
func checkFileLimit(conns int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("get open file limit: %w", err)
	}
	if need := uint64(conns) + 64; need > lim.Cur {
		procs := uint64(conns)/(lim.Max-64) + 1
		return fmt.Errorf("%d connections need %d open files, over this process's limit of %d (hard limit %d): "+
			"use fanout --procs %d, or run several bench processes", conns, need, lim.Cur, lim.Max, procs)
	}
	return nil
}

// SelfCPU returns the CPU time (user + system) this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
