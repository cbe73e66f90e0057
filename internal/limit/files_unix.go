//go:build unix

package limit

import "syscall"

// OpenFileLimit returns the process's limit on open files (RLIMIT_NOFILE,
// which Go raises to the hard limit at start), or 0 when unknown.
func OpenFileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}
