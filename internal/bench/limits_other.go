//go:build !unix

package bench

import "time"

// RaiseFileLimit does nothing where there is no RLIMIT_NOFILE.
func RaiseFileLimit() (uint64, error) { return 0, nil }

// checkFileLimit cannot check anything where there is no RLIMIT_NOFILE.
func checkFileLimit(int) error { return nil }

// SelfCPU is not measured on this platform.
func SelfCPU() time.Duration { return 0 }
