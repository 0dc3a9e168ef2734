//go:build !linux

package ha

import (
	"syscall"
	"time"
)

// setUserTimeout is a no-op off Linux: keepalives and the periodic check
// still bound how long a dead connection goes unnoticed.
func setUserTimeout(syscall.RawConn, time.Duration) error { return nil }
