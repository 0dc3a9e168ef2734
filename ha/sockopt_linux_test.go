//go:build linux

package ha

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func checkClientSocket(t *testing.T, conn *pgx.Conn, wantUserTimeout time.Duration) {
	t.Helper()
	tc, ok := conn.PgConn().Conn().(*net.TCPConn)
	if !ok {
		t.Skipf("lock connection is %T, not TCP", conn.PgConn().Conn())
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got, keepalive int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		got, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout)
		if gerr == nil {
			keepalive, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		}
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if time.Duration(got)*time.Millisecond != wantUserTimeout || keepalive != 1 {
		t.Fatalf("client socket: TCP_USER_TIMEOUT %d ms, SO_KEEPALIVE %d; want %v, 1", got, keepalive, wantUserTimeout)
	}
}
