package broker_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/broker"
)

// BenchmarkIdleConnectionMemory reports the heap one authenticated, idle
// WebSocket costs a replica (broker side plus the test's raw client side,
// which is small: one gorilla conn and no goroutines), measured over 300
// connections, as bytes/conn.
func BenchmarkIdleConnectionMemory(b *testing.B) {
	const n = 300
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b, 1, func(c *broker.Config) { c.MaxConnectionsPerMesh = 10 * n })
		mesh := e.newMesh("Mem")
		ids := make([]identity, n)
		for j := range ids {
			ids[j] = e.enroll(mesh, fmt.Sprintf("m%d", j))
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for _, id := range ids {
			rc := e.raw(0)
			rc.send(helloFrame(id, time.Now()))
			rc.expectFrame("hello_ack")
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/conn")
		b.ReportMetric(float64(after.NumGC-before.NumGC), "gcs")
	}
}

// BenchmarkHelloAttach measures the handshake of a member-key hello end to
// end on one replica: WebSocket upgrade, signature verify, replay claim,
// member lookup, attach (capacity check and insert), fan-out subscription
// and hello_ack, with 32 hellos in flight. Every op is a new member (meshes
// of 16, enrolled before the timer starts, filled in order as meshbench
// does), so every hello inserts a presence and announces peer_joined to at
// most 15 sockets; they stay open until the end. With pg_stat_statements
// loaded in the server it also reports the top-level statements (round
// trips) per hello, the replica's background loops included (stmts/hello).
func BenchmarkHelloAttach(b *testing.B) {
	const perMesh, inFlight = 16, 32
	e := newEnv(b, 1, nil)
	ids := make([]identity, 0, b.N)
	var mesh meshd.Mesh
	for k := 0; k < b.N; k++ {
		if k%perMesh == 0 {
			mesh = e.newMesh(fmt.Sprintf("Hello%d", k/perMesh))
		}
		ids = append(ids, e.enroll(mesh, fmt.Sprintf("h%d", k)))
	}
	url := e.replicas[0].wsURL()
	var next atomic.Int64
	var mu sync.Mutex
	var socks []*websocket.Conn
	defer func() {
		for _, ws := range socks {
			_ = ws.Close()
		}
	}()
	stmts := statementCalls(b, e.dsn)
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < inFlight; w++ {
		wg.Go(func() {
			for {
				k := next.Add(1) - 1
				if k >= int64(b.N) {
					return
				}
				ws, err := helloOnce(url, helloFrame(ids[k], time.Now()))
				if err != nil {
					b.Error(err)
					return
				}
				go discardFrames(ws) // peer_joined of the later hellos
				mu.Lock()
				socks = append(socks, ws)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if after := statementCalls(b, e.dsn); stmts >= 0 && after >= 0 {
		b.ReportMetric(float64(after-stmts-1)/float64(b.N), "stmts/hello") // -1: the first read
	}
}

// helloOnce dials url, sends the hello frame f and waits for hello_ack.
func helloOnce(url string, f map[string]any) (*websocket.Conn, error) {
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	if err := ws.WriteJSON(f); err != nil {
		_ = ws.Close()
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil {
			_ = ws.Close()
			return nil, fmt.Errorf("waiting for hello_ack: %w", err)
		}
		if m["type"] == "hello_ack" {
			_ = ws.SetReadDeadline(time.Time{})
			return ws, nil
		}
	}
}

func discardFrames(ws *websocket.Conn) {
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			return
		}
	}
}

// statementCalls returns the top-level statements pg_stat_statements has
// counted in dsn's database, or -1 when the server does not load it.
func statementCalls(b *testing.B, dsn string) int64 {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return -1
	}
	var n int64
	err = conn.QueryRow(ctx, `SELECT COALESCE(sum(calls), 0)::bigint FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND toplevel`).Scan(&n)
	if err != nil {
		return -1
	}
	return n
}
