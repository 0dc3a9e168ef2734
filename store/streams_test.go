package store

import (
	"testing"
	"time"
)

func (f *fixture) streamCounts(meshID string) map[string]int {
	f.t.Helper()
	out := map[string]int{}
	list, err := f.s.ListStreams(f.ctx, meshID)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, st := range list {
		out[st.Name] = st.Subscribers
	}
	return out
}

func TestCreateStreamInsertOrGet(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id1, err := f.s.CreateStream(f.ctx, f.mesh.ID, "builds", "alice")
	if err != nil {
		t.Fatal(err)
	}
	id2, err := f.s.CreateStream(f.ctx, f.mesh.ID, "builds", "bob")
	if err != nil || id2 != id1 {
		t.Fatalf("second create = %q, %v; want %q", id2, err, id1)
	}
	other, err := f.s.CreateStream(f.ctx, f.other.ID, "builds", "carol")
	if err != nil || other == id1 {
		t.Fatalf("other mesh's stream = %q, %v; want a new id", other, err)
	}
	list, err := f.s.ListStreams(f.ctx, f.mesh.ID)
	if err != nil || len(list) != 1 || list[0].CreatedBy != "alice" {
		t.Fatalf("streams = %+v, %v; want one, by the first creator", list, err)
	}
}

// A subscription counts only while its presence is live, not leased, and
// held by the socket that subscribed.
func TestStreamSubscriberCounts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.s.CreateStream(f.ctx, f.mesh.ID, "logs", "alice"); err != nil {
		t.Fatal(err)
	}
	a := f.attach(f.attachReq(f.alice, "sa", "")).Presence
	b := f.attach(f.attachReq(f.bob, "sb", "")).Presence
	for _, p := range []struct{ id, sock string }{{a.ID, a.SocketID}, {b.ID, b.SocketID}} {
		if err := f.s.SubscribeStream(f.ctx, f.mesh.ID, "logs", p.id, p.sock); err != nil {
			t.Fatal(err)
		}
	}
	// Idempotent per presence.
	if err := f.s.SubscribeStream(f.ctx, f.mesh.ID, "logs", a.ID, a.SocketID); err != nil {
		t.Fatal(err)
	}
	if got := f.streamCounts(f.mesh.ID)["logs"]; got != 2 {
		t.Fatalf("count = %d, want 2", got)
	}
	// bob's socket closes: grace lease → no longer counted.
	if _, err := f.s.Detach(f.ctx, b.ID, b.SocketID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := f.streamCounts(f.mesh.ID)["logs"]; got != 1 {
		t.Fatalf("count after bob's close = %d, want 1", got)
	}
	// alice's presence is taken over by another socket (reattach elsewhere).
	f.exec(`UPDATE mesh.presence SET socket_id = 'other-socket' WHERE id = $1`, a.ID)
	if got := f.streamCounts(f.mesh.ID)["logs"]; got != 0 {
		t.Fatalf("count after takeover = %d, want 0", got)
	}
	n, err := f.s.PruneStreamSubscriptions(f.ctx)
	if err != nil || n != 2 {
		t.Fatalf("prune = %d, %v; want 2", n, err)
	}
}

func TestUnsubscribeAndDropSocketStreams(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if _, err := f.s.CreateStream(f.ctx, f.mesh.ID, "x", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.CreateStream(f.ctx, f.mesh.ID, "y", "alice"); err != nil {
		t.Fatal(err)
	}
	a := f.attach(f.attachReq(f.alice, "sa", "")).Presence
	for _, name := range []string{"x", "y"} {
		if err := f.s.SubscribeStream(f.ctx, f.mesh.ID, name, a.ID, a.SocketID); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.s.UnsubscribeStream(f.ctx, f.mesh.ID, "x", a.ID, a.SocketID); err != nil {
		t.Fatal(err)
	}
	if got := f.streamCounts(f.mesh.ID); got["x"] != 0 || got["y"] != 1 {
		t.Fatalf("counts = %v, want x:0 y:1", got)
	}
	if err := f.s.DropSocketStreams(f.ctx, a.ID, a.SocketID); err != nil {
		t.Fatal(err)
	}
	if got := f.streamCounts(f.mesh.ID); got["y"] != 0 {
		t.Fatalf("counts = %v, want y:0", got)
	}
}
