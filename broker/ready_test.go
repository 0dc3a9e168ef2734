package broker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/fanout"
	"github.com/meshd/meshd/internal/testenv"
	"github.com/meshd/meshd/store"
)

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// The deploy gate (A.3-1): with its own PostgreSQL stopped, /health stays
// 200 (liveness) while /health/ready turns 503 db_down; after a restart it
// is ready again without restarting the broker. A wrong EXPECTED_MIGRATION
// keeps it 503 migration_missing; the right file name or SHA-256 passes.
func TestReadinessGate(t *testing.T) {
	ctx := context.Background()
	pg, st := ownCluster(t)
	latest := store.Migrations()[len(store.Migrations())-1]
	start := func(expected string) string {
		reg := prometheus.NewRegistry()
		bus, err := fanout.New(ctx, fanout.Config{URL: testenv.NATSURL(t), Prefix: "ready", Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bus.Close() })
		srv, err := broker.New(broker.Config{NodeID: "ready", Store: st, Fanout: bus, NATS: bus, Registry: reg,
			Audit:  testenv.RunAudit(t, st, reg, zerolog.Nop()),
			Logger: zerolog.Nop(), ExpectedMigration: expected})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start(ctx)
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(func() { _ = srv.Shutdown(ctx); hs.Close() })
		return hs.URL
	}
	base := start("")
	if code, m := getJSON(t, base+"/health/ready"); code != 200 || m["status"] != "ready" {
		t.Fatalf("ready: %d %v", code, m)
	}
	for _, exp := range []string{latest.Name, latest.SHA256} {
		if code, m := getJSON(t, start(exp)+"/health/ready"); code != 200 {
			t.Fatalf("EXPECTED_MIGRATION=%s: %d %v", exp, code, m)
		}
	}
	wrong := start("9999_future.sql")
	if code, m := getJSON(t, wrong+"/health/ready"); code != 503 || m["status"] != "not_ready" || !hasReason(m, "migration_missing") {
		t.Fatalf("wrong migration: %d %v", code, m)
	}

	if err := pg.StopServer(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "ready 503 db_down", func() bool {
		code, m := getJSON(t, base+"/health/ready")
		return code == 503 && hasReason(m, "db_down")
	})
	if code, m := getJSON(t, base+"/health"); code != 200 || m["status"] != "ok" || m["db"] != "down" {
		t.Fatalf("health during outage: %d %v", code, m)
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "ready again", func() bool {
		code, _ := getJSON(t, base+"/health/ready")
		return code == 200
	})
}

func hasReason(m map[string]any, want string) bool {
	rs, _ := m["reasons"].([]any)
	for _, r := range rs {
		if r == want {
			return true
		}
	}
	return false
}
