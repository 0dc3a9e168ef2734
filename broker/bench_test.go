package broker_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

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
