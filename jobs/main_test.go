package jobs_test

import (
	"testing"

	"github.com/meshd/meshd/internal/testpg"
)

// The jobs' tests run them end to end: real PostgreSQL (internal/testpg),
// replicas with sockets and embedded NATS (internal/testenv).
func TestMain(m *testing.M) { testpg.Main(m) }
