//go:build !linux

package ha

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func checkClientSocket(*testing.T, *pgx.Conn, time.Duration) {}
