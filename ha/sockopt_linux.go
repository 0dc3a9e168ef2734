//go:build linux

package ha

import (
	"errors"
	"syscall"
	"time"
)

// tcpUserTimeout is TCP_USER_TIMEOUT from linux/tcp.h (the same on every
// architecture); package syscall lacks it on some GOARCHes, amd64 included.
const tcpUserTimeout = 0x12

// setUserTimeout bounds how long sent data may stay unacknowledged before
// the kernel drops the connection.
func setUserTimeout(c syscall.RawConn, d time.Duration) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d.Milliseconds()))
	})
	return errors.Join(err, serr)
}
