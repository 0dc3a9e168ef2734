package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd/client"
)

// Counter reads the value of the counter or gauge name whose labels
// include the given name, value pairs (0 when there is none).
func Counter(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

// WaitFor polls cond until it holds or d passes (then t fails).
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// RecvPush waits up to d for the next non-system push on c.
func RecvPush(t testing.TB, c *client.Client, d time.Duration) client.Message {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-c.Pushes():
			if !ok {
				t.Fatal("push channel closed")
			}
			if m.Push.Subtype == "system" {
				continue
			}
			return m
		case <-timeout:
			t.Fatal("no push within deadline")
		}
	}
}

// Request sends frame on c and returns the reply of type respType (within
// 10 s) as a map.
func Request(t testing.TB, c *client.Client, frame map[string]any, respType string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := c.Request(ctx, frame, respType)
	if err != nil {
		t.Fatalf("%v: %v", frame["type"], err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// RequestError sends frame on c and returns the error frame that answers it.
func RequestError(t testing.TB, c *client.Client, frame map[string]any) *client.ServerError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := c.Request(ctx, frame, "")
	var se *client.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("%v: got %s, %v; want an error frame", frame["type"], raw, err)
	}
	return se
}

// Exec runs one statement against dsn (a test's hook into the database).
func Exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	withConn(t, dsn, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	})
}

// QueryInt runs a query returning one integer against dsn.
func QueryInt(t testing.TB, dsn, sql string, args ...any) int {
	t.Helper()
	var n int
	withConn(t, dsn, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, sql, args...).Scan(&n)
	})
	return n
}

// withConn runs fn on a connection of its own to dsn; an error fails t.
func withConn(t testing.TB, dsn string, fn func(context.Context, *pgx.Conn) error) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := fn(ctx, conn); err != nil {
		t.Fatal(err)
	}
}
