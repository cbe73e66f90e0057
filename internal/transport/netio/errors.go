package netio

import "errors"

// Errors of Socket's calls, for callers to branch on.
var (
	// ErrWouldBlock reports that the socket was not ready: a write's data
	// did not all fit in the socket buffer, or a read found nothing.
	ErrWouldBlock = errors.New("socket not ready")
	// ErrNoTry reports that non-blocking socket calls are not available
	// (no raw descriptor, or not on this platform): use blocking calls.
	ErrNoTry = errors.New("non-blocking socket calls not available")
)
