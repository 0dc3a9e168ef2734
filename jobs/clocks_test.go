package jobs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/internal/testenv"
)

type tickData struct {
	Tick    int64   `json:"tick"`
	SimTime string  `json:"simTime"`
	Speed   float64 `json:"speed"`
}

// nextTick waits for the next tick system push on c.
func nextTick(t *testing.T, c *client.Client, d time.Duration) tickData {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-c.Pushes():
			if !ok {
				t.Fatal("closed while waiting for a tick")
			}
			if m.Push.Event != "tick" {
				continue
			}
			if m.Push.Subtype != "system" || m.Push.SenderPubkey != "system" || m.Push.Priority != "low" {
				t.Fatalf("tick push = %+v", m.Push)
			}
			var td tickData
			if err := json.Unmarshal(m.Push.EventData, &td); err != nil {
				t.Fatal(err)
			}
			return td
		case <-timeout:
			t.Fatal("no tick within deadline")
		}
	}
}

func clockFrame(typ string, extra ...any) map[string]any {
	f := map[string]any{"type": typ}
	for i := 0; i+1 < len(extra); i += 2 {
		f[extra[i].(string)] = extra[i+1]
	}
	return f
}

// set_clock at speed 60 ticks once a second; peers on both replicas get
// every tick, and with the clock job running on both replicas at once no
// tick number is ever sent twice.
func TestClockTicksReachBothReplicasOnce(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, 2, testenv.Options{})
	mesh := e.NewMesh("clock")
	alice, bob := e.Enroll(mesh, "alice"), e.Enroll(mesh, "bob")
	a, b := e.Dial(0, alice, nil), e.Dial(1, bob, nil)

	st := testenv.Request(t, a, clockFrame("set_clock", "speed", 60, "_reqId", "k"), "clock_status")
	if st["speed"] != 60.0 || st["paused"] != false || st["tick"] != 0.0 || st["_reqId"] != "k" || st["simTime"] != st["startedAt"] {
		t.Fatalf("clock_status = %v", st)
	}
	start, err := time.Parse(time.RFC3339Nano, st["simTime"].(string))
	if err != nil {
		t.Fatal(err)
	}
	testenv.RunJob(t, e.Replicas[0].Jobs.Clocks)
	testenv.RunJob(t, e.Replicas[1].Jobs.Clocks)

	for _, cl := range []*client.Client{a, b} {
		var last int64
		for range 3 {
			td := nextTick(t, cl, 10*time.Second)
			if td.Tick != last+1 || td.Speed != 60 {
				t.Fatalf("tick %+v after %d: want consecutive tick numbers at speed 60", td, last)
			}
			sim, err := time.Parse(time.RFC3339Nano, td.SimTime)
			if err != nil || !sim.Equal(start.Add(time.Duration(td.Tick)*time.Minute)) {
				t.Fatalf("tick %d simTime %s, want start + %d min", td.Tick, td.SimTime, td.Tick)
			}
			last = td.Tick
		}
	}
	got := testenv.Request(t, b, clockFrame("get_clock"), "clock_status")
	if got["tick"].(float64) < 3 || got["paused"] != false {
		t.Fatalf("get_clock = %v", got)
	}
}

// The verbs before and after a clock exists: no_clock, get_clock defaults,
// speed clamping, pause and resume; a paused clock does not tick.
func TestClockVerbs(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, 2, testenv.Options{})
	mesh := e.NewMesh("clockverbs")
	alice, bob := e.Enroll(mesh, "alice"), e.Enroll(mesh, "bob")
	a, b := e.Dial(0, alice, nil), e.Dial(1, bob, nil)

	for _, typ := range []string{"pause_clock", "resume_clock"} {
		se := testenv.RequestError(t, a, clockFrame(typ))
		if se.Code != "no_clock" || se.Message != "No clock running for this mesh" {
			t.Fatalf("%s without clock: %+v", typ, se)
		}
	}
	def := testenv.Request(t, a, clockFrame("get_clock"), "clock_status")
	if def["speed"] != 0.0 || def["paused"] != true || def["tick"] != 0.0 || def["simTime"] == "" || def["startedAt"] == "" {
		t.Fatalf("get_clock defaults = %v", def)
	}

	speeds := []struct {
		name string
		in   any
		want float64
	}{
		{"number", 5, 5},
		{"numeric_string", "7", 7},
		{"above_max", 1000, 100},
		{"zero_is_default", 0, 1},
		{"negative_clamped", -3, 1},
		{"garbage_is_default", "fast", 1},
		{"fraction_kept", 2.5, 2.5},
	}
	for _, tt := range speeds {
		t.Run(tt.name, func(t *testing.T) {
			st := testenv.Request(t, a, clockFrame("set_clock", "speed", tt.in), "clock_status")
			if st["speed"] != tt.want {
				t.Fatalf("set_clock %v → speed %v, want %v", tt.in, st["speed"], tt.want)
			}
		})
	}

	if st := testenv.Request(t, b, clockFrame("pause_clock"), "clock_status"); st["paused"] != true {
		t.Fatalf("pause_clock = %v", st)
	}
	if st := testenv.Request(t, a, clockFrame("get_clock"), "clock_status"); st["paused"] != true {
		t.Fatalf("get_clock after pause on the other replica = %v", st)
	}
	testenv.Exec(t, e.DSN, `UPDATE mesh.clock SET next_tick_at = now() - interval '1 second' WHERE mesh_id = $1`, mesh.ID)
	if n := e.Replicas[0].Jobs.AdvanceClocks(context.Background()); n != 0 {
		t.Fatalf("paused clock ticked %d times", n)
	}
	if st := testenv.Request(t, a, clockFrame("resume_clock"), "clock_status"); st["paused"] != false || st["tick"] != 0.0 {
		t.Fatalf("resume_clock = %v", st)
	}
	testenv.Exec(t, e.DSN, `UPDATE mesh.clock SET next_tick_at = now() - interval '1 millisecond' WHERE mesh_id = $1`, mesh.ID)
	if n := e.Replicas[1].Jobs.AdvanceClocks(context.Background()); n != 1 {
		t.Fatalf("resumed due clock ticked %d times, want 1", n)
	}
	for _, cl := range []*client.Client{a, b} {
		if td := nextTick(t, cl, 5*time.Second); td.Tick != 1 || td.Speed != 2.5 {
			t.Fatalf("tick = %+v, want 1 at speed 2.5", td)
		}
	}
}

// When the mesh's last presence is evicted the clock job pauses its clock.
func TestClockAutoPausesWhenMeshEmpties(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, 1, testenv.Options{Broker: func(c *broker.Config) { c.Grace = 100 * time.Millisecond }, Upkeep: true})
	mesh := e.NewMesh("clockidle")
	a := e.Dial(0, e.Enroll(mesh, "alice"), nil)
	testenv.Request(t, a, clockFrame("set_clock", "speed", 1), "clock_status")
	testenv.RunJob(t, e.Replicas[0].Jobs.Clocks)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the clock to auto-pause", func() bool {
		return testenv.QueryInt(t, e.DSN, `SELECT paused::int FROM mesh.clock WHERE mesh_id = $1`, mesh.ID) == 1
	})
}
