package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd"
)

// MAX_CONNECTIONS_PER_MESH is counted across replicas, exactly (A.3-7).
func TestAttachCapacityExactUnderConcurrency(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const attempts, maxPerMesh = 10, 5
	errs := make([]error, attempts)
	var wg sync.WaitGroup
	for i := range attempts {
		req := f.attachReq(f.bob, fmt.Sprintf("sess-%d", i), "")
		req.MaxPerMesh = maxPerMesh
		wg.Go(func() { _, errs[i] = f.s.Attach(f.ctx, req) })
	}
	wg.Wait()
	ok, full := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, meshd.ErrCapacity):
			full++
		default:
			t.Fatalf("attach: %v", err)
		}
	}
	if ok != maxPerMesh || full != attempts-maxPerMesh {
		t.Fatalf("%d attached, %d at capacity; want %d and %d", ok, full, maxPerMesh, attempts-maxPerMesh)
	}
	if n, err := f.s.CountLive(f.ctx, f.mesh.ID); err != nil || n != maxPerMesh {
		t.Fatalf("CountLive = %d, %v", n, err)
	}
}

// Hellos of different members of one mesh race for its slots: exactly
// MaxPerMesh of them attach.
func TestAttachCapacityExactAcrossMembers(t *testing.T) {
	f := newFixture(t)
	const attempts, maxPerMesh = 12, 5
	errs := make([]error, attempts)
	var wg sync.WaitGroup
	for i := range attempts {
		m := f.createMember(f.mesh.ID, key(byte('0'+i%10))+fmt.Sprint(i), fmt.Sprintf("m%d", i), "member")
		req := f.attachReq(m, "s", "")
		req.MaxPerMesh = maxPerMesh
		wg.Go(func() { _, errs[i] = f.s.Attach(f.ctx, req) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if !errors.Is(err, meshd.ErrCapacity) {
			t.Fatalf("attach: %v", err)
		}
	}
	if n, err := f.s.CountLive(f.ctx, f.mesh.ID); ok != maxPerMesh || err != nil || n != maxPerMesh {
		t.Fatalf("%d attached, CountLive = %d, %v; want %d", ok, n, err, maxPerMesh)
	}
}

// An attach does not wait for another member's attach in flight in the same
// mesh (no per-mesh lock: it takes another slot); only the last free slot,
// being taken by one in flight, is waited for — and then the cap holds.
func TestAttachDoesNotWaitForTheMesh(t *testing.T) {
	f := newFixture(t)
	carol := f.createMember(f.mesh.ID, key('c'), "carol", "member")
	dave := f.createMember(f.mesh.ID, key('d'), "dave", "member")
	req := func(m meshd.Member) meshd.AttachRequest {
		r := f.attachReq(m, "s-"+m.DisplayName, "")
		r.MaxPerMesh = 3
		return r
	}
	tx, err := f.s.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(f.ctx) }()
	if _, err := attach(f.ctx, tx, req(f.alice)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	for _, m := range []meshd.Member{f.bob, carol} {
		if _, err := f.s.Attach(ctx, req(m)); err != nil {
			t.Fatalf("%s: %v (waited for alice's attach in flight?)", m.DisplayName, err)
		}
	}
	done := make(chan error, 1)
	go func() { _, err := f.s.Attach(ctx, req(dave)); done <- err }()
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	wantErr(t, <-done, meshd.ErrCapacity)
	if n, _ := f.s.CountLive(f.ctx, f.mesh.ID); n != 3 {
		t.Fatalf("CountLive = %d, want 3", n)
	}
}

// A grace-leased presence still counts (B.2 check 2), but reattaching it
// never fails on capacity.
func TestAttachCapacityCountsLeasesReattachIgnoresCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	req := f.attachReq(f.bob, "s1", key('1'))
	req.MaxPerMesh = 1
	first := f.attach(req)
	if ok, err := f.s.Detach(f.ctx, first.Presence.ID, req.Presence.SocketID, time.Minute); !ok || err != nil {
		t.Fatalf("detach = %v, %v", ok, err)
	}
	other := f.attachReq(f.alice, "s2", key('2'))
	other.MaxPerMesh = 1
	_, err := f.s.Attach(f.ctx, other)
	wantErr(t, err, meshd.ErrCapacity)

	again := f.attachReq(f.bob, "s1", key('1'))
	again.MaxPerMesh = 1
	res := f.attach(again)
	if !res.Reattached || res.Presence.ID != first.Presence.ID {
		t.Fatalf("not reattached: %+v", res)
	}
}

func TestAttachReattach(t *testing.T) {
	t.Parallel()
	sessKey := key('5')
	tests := []struct {
		name           string
		sessionPubkey  string
		detach         bool // old socket closed: presence in its grace lease
		takeOverOnline bool
		sameSessionID  bool
		otherMember    bool
		wantReattach   bool
		wantReplaced   bool // the old socket must be closed
	}{
		{name: "leased_by_session_pubkey", sessionPubkey: sessKey, detach: true, wantReattach: true},
		{name: "leased_by_session_id_and_member", detach: true, sameSessionID: true, wantReattach: true},
		{name: "leased_different_session_id_new", detach: true},
		{name: "online_hello_not_taken_over", sessionPubkey: sessKey, sameSessionID: true, wantReplaced: true},
		{name: "online_session_hello_taken_over", sessionPubkey: sessKey, takeOverOnline: true, wantReattach: true, wantReplaced: true},
		{name: "leased_session_hello_no_replaced", sessionPubkey: sessKey, detach: true, takeOverOnline: true, wantReattach: true},
		{name: "other_member_same_session_pubkey", sessionPubkey: sessKey, detach: true, takeOverOnline: true, otherMember: true},
		{name: "other_member_same_session_id_not_deduped", sameSessionID: true, otherMember: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			oldReq := f.attachReq(f.bob, "sid-1", tt.sessionPubkey)
			old := f.attach(oldReq)
			if tt.detach {
				if ok, err := f.s.Detach(f.ctx, old.Presence.ID, oldReq.Presence.SocketID, time.Minute); !ok || err != nil {
					t.Fatalf("detach = %v, %v", ok, err)
				}
			}
			member, sid := f.bob, "sid-2"
			if tt.otherMember {
				member = f.alice
			}
			if tt.sameSessionID || tt.sessionPubkey != "" && !tt.otherMember {
				sid = "sid-1"
			}
			req := f.attachReq(member, sid, tt.sessionPubkey)
			req.Presence.NodeID, req.Presence.CWD, req.Presence.DisplayName = "node-2", "/new/cwd", "renamed"
			req.TakeOverOnline = tt.takeOverOnline
			res := f.attach(req)

			if res.Reattached != tt.wantReattach || (res.Presence.ID == old.Presence.ID) != tt.wantReattach {
				t.Fatalf("Reattached = %v (id kept %v), want %v", res.Reattached, res.Presence.ID == old.Presence.ID, tt.wantReattach)
			}
			p := res.Presence
			if p.SocketID != req.Presence.SocketID || p.NodeID != "node-2" || p.CWD != "/new/cwd" ||
				p.DisplayName != "renamed" || p.LeaseUntil != nil || p.DisconnectedAt != nil {
				t.Fatalf("presence not owned by the new socket: %+v", p)
			}
			wantRep := []meshd.Replaced(nil)
			if tt.wantReplaced {
				wantRep = []meshd.Replaced{{PresenceID: old.Presence.ID, SocketID: oldReq.Presence.SocketID, NodeID: "node-1"}}
			}
			if fmt.Sprint(res.Replaced) != fmt.Sprint(wantRep) {
				t.Fatalf("Replaced = %v, want %v", res.Replaced, wantRep)
			}
			if !tt.wantReattach && tt.wantReplaced {
				// Session-id dedup: the old row is gone without a lease (no peer_left).
				if o := f.presence(old.Presence.ID); o.DisconnectedAt == nil || o.LeaseUntil != nil {
					t.Fatalf("replaced presence still live: %+v", o)
				}
			}
		})
	}
}

func TestAttachRejectsIncompleteRequest(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name   string
		mutate func(*meshd.Presence)
	}{
		{"missing_mesh", func(p *meshd.Presence) { p.MeshID = "" }},
		{"missing_member", func(p *meshd.Presence) { p.MemberID = "" }},
		{"missing_node", func(p *meshd.Presence) { p.NodeID = "" }},
		{"missing_socket", func(p *meshd.Presence) { p.SocketID = "" }},
		{"unknown_member", func(p *meshd.Presence) { p.MemberID = "nobody" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := f.attachReq(f.bob, "s-"+tt.name, "")
			tt.mutate(&req.Presence)
			if _, err := f.s.Attach(f.ctx, req); err == nil {
				t.Fatal("incomplete request attached")
			}
		})
	}
	// A valid request still works afterwards.
	f.attach(f.attachReq(f.bob, "s-ok", ""))
	if n, _ := f.s.CountLive(f.ctx, f.mesh.ID); n != 1 {
		t.Fatalf("CountLive = %d, want 1", n)
	}
}

func TestAttachNewPresenceFields(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	req := f.attachReq(f.bob, "s1", "")
	req.Presence.Role = meshd.RoleControlPlane
	req.Presence.Hostname, req.Presence.PeerType, req.Presence.Channel, req.Presence.Model = "h", "ai", "claude-code", "m"
	res := f.attach(req)
	p := res.Presence
	if res.Reattached || len(res.Replaced) != 0 || len(p.ID) != 32 {
		t.Fatalf("result %+v", res)
	}
	if p.DisplayName != "bob" || p.MemberPubkey != f.bob.Pubkey || p.Status != meshd.StatusIdle ||
		p.StatusSource != meshd.SourceJSONL || !p.Visible || string(p.Profile) != "{}" ||
		p.Role != meshd.RoleControlPlane || p.Hostname != "h" || p.PeerType != "ai" || p.Channel != "claude-code" ||
		p.Model != "m" || len(p.Groups) != 1 || p.Groups[0].Name != "dev" || p.PID != req.Presence.PID {
		t.Fatalf("new presence %+v", p)
	}
}

type pending struct {
	status meshd.Status
	ago    int // seconds
}

// Pending hook status (B.6.5, B.17: applied on connect, newest wins, older
// than 10 s ignored).
func TestAttachPendingStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		pending    []pending
		wantStatus meshd.Status
		wantSource meshd.StatusSource
		wantUsed   int
	}{
		{"none", nil, meshd.StatusIdle, meshd.SourceJSONL, 0},
		{"applied", []pending{{meshd.StatusWorking, 2}}, meshd.StatusWorking, meshd.SourceHook, 1},
		{"newest_wins", []pending{{meshd.StatusWorking, 5}, {meshd.StatusIdle, 1}}, meshd.StatusIdle, meshd.SourceHook, 2},
		{"newest_wins_working", []pending{{meshd.StatusIdle, 5}, {meshd.StatusWorking, 1}}, meshd.StatusWorking, meshd.SourceHook, 2},
		{"older_than_window_ignored", []pending{{meshd.StatusWorking, 11}}, meshd.StatusIdle, meshd.SourceJSONL, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			req := f.attachReq(f.bob, "s1", "")
			req.PendingWindow = 10 * time.Second
			for i, pend := range tt.pending {
				f.exec(`INSERT INTO mesh.pending_status (id, pid, cwd, status, created_at)
VALUES ($1, $2, $3, $4, now() - make_interval(secs => $5))`,
					fmt.Sprint("pend-", i), req.Presence.PID, req.Presence.CWD, string(pend.status), pend.ago)
			}
			// A row for another (pid, cwd) is never applied.
			f.exec(`INSERT INTO mesh.pending_status (id, pid, cwd, status) VALUES ('elsewhere', 1, '/else', 'dnd')`)
			p := f.attach(req).Presence
			if p.Status != tt.wantStatus || p.StatusSource != tt.wantSource {
				t.Fatalf("status %s/%s, want %s/%s", p.Status, p.StatusSource, tt.wantStatus, tt.wantSource)
			}
			var used int
			_ = f.s.pool.QueryRow(f.ctx, "SELECT count(*) FROM mesh.pending_status WHERE applied_at IS NOT NULL").Scan(&used)
			if used != tt.wantUsed {
				t.Fatalf("%d pending rows marked applied, want %d", used, tt.wantUsed)
			}
		})
	}
}

// A close from a socket that no longer owns the presence is ignored.
func TestDetachAndTouchIgnoreStaleSocket(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	first := f.attachReq(f.bob, "s1", key('5'))
	res := f.attach(first)
	second := f.attachReq(f.bob, "s1", key('5'))
	second.TakeOverOnline = true
	f.attach(second)
	id := res.Presence.ID

	f.exec("UPDATE mesh.presence SET last_ping_at = now() - interval '1 hour' WHERE id = $1", id)
	if err := f.s.Touch(f.ctx, id, first.Presence.SocketID); err != nil {
		t.Fatal(err)
	}
	if p := f.presence(id); time.Since(p.LastPingAt) < 59*time.Minute {
		t.Fatal("stale socket's pong was recorded")
	}
	if ok, err := f.s.Detach(f.ctx, id, first.Presence.SocketID, time.Minute); ok || err != nil {
		t.Fatalf("stale Detach = %v, %v", ok, err)
	}
	if p := f.presence(id); p.LeaseUntil != nil {
		t.Fatal("stale socket started a lease")
	}
	if err := f.s.Touch(f.ctx, id, second.Presence.SocketID); err != nil {
		t.Fatal(err)
	}
	if p := f.presence(id); time.Since(p.LastPingAt) > time.Minute {
		t.Fatal("owner's pong not recorded")
	}
	if ok, err := f.s.Detach(f.ctx, id, second.Presence.SocketID, time.Minute); !ok || err != nil {
		t.Fatalf("owner Detach = %v, %v", ok, err)
	}
	if p := f.presence(id); p.LeaseUntil == nil {
		t.Fatal("owner's close did not start a lease")
	}
}

func TestEvictExpiredLeasesOncePerRow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const rows, sweepers = 12, 4
	want := map[string]bool{}
	for i := range rows {
		req := f.attachReq(f.bob, fmt.Sprint("s", i), "")
		p := f.attach(req).Presence
		grace := -time.Second // already expired
		if i%4 == 0 {
			grace = time.Hour // still in grace: not evicted
		} else {
			want[p.ID] = true
		}
		if ok, err := f.s.Detach(f.ctx, p.ID, req.Presence.SocketID, grace); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	f.attach(f.attachReq(f.bob, "online", "")) // no lease: not evicted
	got := make([][]meshd.Presence, sweepers)
	errs := make([]error, sweepers)
	var wg sync.WaitGroup
	for i := range sweepers {
		wg.Go(func() { got[i], errs[i] = f.s.EvictExpiredLeases(f.ctx) })
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range got {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		for _, p := range got[i] {
			if seen[p.ID] || !want[p.ID] {
				t.Fatalf("evicted %s twice or wrongly", p.ID)
			}
			seen[p.ID] = true
			if p.DisconnectedAt == nil || p.MemberPubkey != f.bob.Pubkey || p.DisplayName != "bob" {
				t.Fatalf("evicted row %+v", p)
			}
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("evicted %d, want %d", len(seen), len(want))
	}
	if n, _ := f.s.CountLive(f.ctx, f.mesh.ID); n != rows-len(want)+1 {
		t.Fatalf("CountLive = %d", n)
	}
}

func TestListPeers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := f.attachReq(f.alice, "a1", "")
	a.Presence.DisplayName = "alice-laptop"
	pa := f.attach(a).Presence
	b := f.attachReq(f.bob, "b1", key('5'))
	pb := f.attach(b).Presence
	if ok, _ := f.s.Detach(f.ctx, pb.ID, b.Presence.SocketID, time.Minute); !ok {
		t.Fatal("detach")
	}
	gone := f.attachReq(f.bob, "b2", "")
	pg := f.attach(gone).Presence
	f.exec("UPDATE mesh.presence SET disconnected_at = now() WHERE id = $1", pg.ID)
	f.attach(f.attachReq(f.carol, "c1", "")) // other mesh

	peers, err := f.s.ListPeers(f.ctx, f.mesh.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 2 || peers[0].ID != pa.ID || peers[1].ID != pb.ID {
		t.Fatalf("peers = %v", peers)
	}
	if peers[0].DisplayName != "alice-laptop" || peers[1].DisplayName != "bob" ||
		peers[1].RoutingPubkey() != key('5') || peers[1].MemberPubkey != f.bob.Pubkey || peers[1].LeaseUntil == nil {
		t.Fatalf("peer fields: %+v", peers)
	}
}

func TestLeaseStaleAndNodePresences(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, node := range []string{"node-1", "node-2", "node-dead"} {
		if err := f.s.Heartbeat(f.ctx, node, node+":7900"); err != nil {
			t.Fatal(err)
		}
	}
	f.exec("UPDATE mesh.node SET heartbeat_at = now() - interval '5 minutes' WHERE id = 'node-dead'")
	mk := func(node, sid string) string {
		r := f.attachReq(f.bob, sid, "")
		r.Presence.NodeID = node
		return f.attach(r).Presence.ID
	}
	fresh := mk("node-1", "fresh")
	silent := mk("node-1", "silent")
	f.exec("UPDATE mesh.presence SET last_ping_at = now() - interval '5 minutes' WHERE id = $1", silent)
	onDead := mk("node-dead", "dead")
	other := mk("node-2", "other")
	n, err := f.s.LeaseStalePresences(f.ctx, time.Minute, time.Minute, 90*time.Second)
	if err != nil || n != 2 {
		t.Fatalf("LeaseStalePresences = %d, %v; want 2", n, err)
	}
	leased := func(id string) bool { return f.presence(id).LeaseUntil != nil }
	if leased(fresh) || !leased(silent) || !leased(onDead) || leased(other) {
		t.Fatal("wrong presences leased")
	}
	if n, _ := f.s.LeaseStalePresences(f.ctx, time.Minute, time.Minute, 90*time.Second); n != 0 {
		t.Fatalf("second run leased %d", n)
	}
	// Graceful shutdown of node-1 leases only its own live presences.
	n, err = f.s.LeaseNodePresences(f.ctx, "node-1", 90*time.Second)
	if err != nil || n != 1 || !leased(fresh) || leased(other) {
		t.Fatalf("LeaseNodePresences = %d, %v", n, err)
	}
	if err := f.s.SetDraining(f.ctx, "node-1"); err != nil {
		t.Fatal(err)
	}
	var draining bool
	_ = f.s.pool.QueryRow(f.ctx, "SELECT draining FROM mesh.node WHERE id = 'node-1'").Scan(&draining)
	if !draining {
		t.Fatal("node-1 not draining")
	}
}

// The dead-node sweep takes more rows than one batch, never waits on a row
// a hello holds (it is left for the next sweep), and the lease eviction
// does the same.
func TestSweepsBatchAndSkipLockedRows(t *testing.T) {
	f := newFixture(t)
	if err := f.s.Heartbeat(f.ctx, "node-dead", ""); err != nil {
		t.Fatal(err)
	}
	f.exec("UPDATE mesh.node SET heartbeat_at = now() - interval '5 minutes' WHERE id = 'node-dead'")
	const rows = sweepBatch + 7
	f.exec(`INSERT INTO mesh.presence (id, mesh_id, member_id, session_id, pid, cwd, node_id, socket_id)
SELECT 'dead-' || i, $1, $2, 's' || i, i, '/w', 'node-dead', 'sock-' || i FROM generate_series(1, $3) i`,
		f.mesh.ID, f.bob.ID, rows)

	tx, err := f.s.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(f.ctx) }()
	if _, err := tx.Exec(f.ctx, "SELECT 1 FROM mesh.presence WHERE id = 'dead-1' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
	defer cancel()
	n, err := f.s.LeaseStalePresences(ctx, time.Hour, time.Minute, 90*time.Second)
	if err != nil || n != rows-1 {
		t.Fatalf("LeaseStalePresences = %d, %v; want %d (the locked row skipped)", n, err, rows-1)
	}
	if f.presence("dead-1").LeaseUntil != nil {
		t.Fatal("the locked row was leased")
	}
	f.exec("UPDATE mesh.presence SET lease_until = now() - interval '1 second' WHERE node_id = 'node-dead' AND lease_until IS NOT NULL")
	if _, err := tx.Exec(f.ctx, "SELECT 1 FROM mesh.presence WHERE id = 'dead-2' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	gone, err := f.s.EvictExpiredLeases(ctx)
	if err != nil || len(gone) != rows-2 {
		t.Fatalf("EvictExpiredLeases = %d rows, %v; want %d (the locked row skipped)", len(gone), err, rows-2)
	}
	if err := tx.Rollback(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := f.s.LeaseStalePresences(ctx, time.Hour, time.Minute, 90*time.Second); err != nil || n != 1 {
		t.Fatalf("next sweep = %d, %v; want the row released since", n, err)
	}
	if gone, err := f.s.EvictExpiredLeases(ctx); err != nil || len(gone) != 1 || gone[0].ID != "dead-2" {
		t.Fatalf("next eviction = %v, %v; want dead-2", gone, err)
	}
}

// Status write rules (B.6.2, B.17 broker.test.ts).
func TestWriteStatus(t *testing.T) {
	t.Parallel()
	const window = 30 * time.Second
	tests := []struct {
		name       string
		status     meshd.Status // recorded
		source     meshd.StatusSource
		age        time.Duration
		write      meshd.Status
		by         meshd.StatusSource
		want       meshd.Status
		wantSource meshd.StatusSource
		changed    bool
	}{
		{"stale_hook_same_status_jsonl_downgrades", meshd.StatusWorking, meshd.SourceHook, 120 * time.Second,
			meshd.StatusWorking, meshd.SourceJSONL, meshd.StatusWorking, meshd.SourceJSONL, true},
		{"fresh_hook_same_status_jsonl_kept", meshd.StatusWorking, meshd.SourceHook, 10 * time.Second,
			meshd.StatusWorking, meshd.SourceJSONL, meshd.StatusWorking, meshd.SourceHook, false},
		{"manual_dnd_not_overridden_by_hook", meshd.StatusDND, meshd.SourceManual, 0,
			meshd.StatusIdle, meshd.SourceHook, meshd.StatusDND, meshd.SourceManual, false},
		{"manual_dnd_not_overridden_by_jsonl", meshd.StatusDND, meshd.SourceManual, 300 * time.Second,
			meshd.StatusIdle, meshd.SourceJSONL, meshd.StatusDND, meshd.SourceManual, false},
		{"hook_dnd_not_sacred_changed_by_hook", meshd.StatusDND, meshd.SourceHook, 0,
			meshd.StatusWorking, meshd.SourceHook, meshd.StatusWorking, meshd.SourceHook, true},
		{"manual_dnd_changed_by_manual", meshd.StatusDND, meshd.SourceManual, 0,
			meshd.StatusIdle, meshd.SourceManual, meshd.StatusIdle, meshd.SourceManual, true},
		{"status_differs_sets_all", meshd.StatusIdle, meshd.SourceJSONL, 0,
			meshd.StatusWorking, meshd.SourceHook, meshd.StatusWorking, meshd.SourceHook, true},
		{"same_status_higher_rank_takes_source", meshd.StatusWorking, meshd.SourceJSONL, 0,
			meshd.StatusWorking, meshd.SourceManual, meshd.StatusWorking, meshd.SourceManual, true},
		{"same_status_same_rank_no_change", meshd.StatusIdle, meshd.SourceHook, 0,
			meshd.StatusIdle, meshd.SourceHook, meshd.StatusIdle, meshd.SourceHook, false},
		{"fresh_manual_kept_against_jsonl", meshd.StatusIdle, meshd.SourceManual, 5 * time.Second,
			meshd.StatusIdle, meshd.SourceJSONL, meshd.StatusIdle, meshd.SourceManual, false},
	}
	f := newFixture(t)
	req := f.attachReq(f.bob, "s1", "")
	id := f.attach(req).Presence.ID
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.exec(`UPDATE mesh.presence SET status = $2, status_source = $3,
	status_updated_at = now() - make_interval(secs => $4) WHERE id = $1`, id, string(tt.status), string(tt.source), tt.age.Seconds())
			changed, err := f.s.WriteStatus(f.ctx, id, tt.write, tt.by, window)
			if err != nil {
				t.Fatal(err)
			}
			p := f.presence(id)
			if p.Status != tt.want || p.StatusSource != tt.wantSource || changed != tt.changed {
				t.Fatalf("got %s/%s changed=%v, want %s/%s changed=%v", p.Status, p.StatusSource, changed,
					tt.want, tt.wantSource, tt.changed)
			}
		})
	}
	t.Run("rejects_invalid", func(t *testing.T) {
		if _, err := f.s.WriteStatus(f.ctx, id, "asleep", meshd.SourceHook, window); err == nil {
			t.Fatal("invalid status accepted")
		}
		if _, err := f.s.WriteStatus(f.ctx, id, meshd.StatusIdle, "cron", window); err == nil {
			t.Fatal("invalid source accepted")
		}
	})
	t.Run("unknown_presence", func(t *testing.T) {
		_, err := f.s.WriteStatus(f.ctx, "nope", meshd.StatusIdle, meshd.SourceHook, window)
		wantErr(t, err, meshd.ErrNotFound)
	})
}

// The remote-broker JSONL fallback before a drain (B.6.3).
func TestRefreshStatus(t *testing.T) {
	t.Parallel()
	const window = 30 * time.Second
	tests := []struct {
		name       string
		status     meshd.Status
		source     meshd.StatusSource
		age        time.Duration
		want       meshd.Status
		wantSource meshd.StatusSource
	}{
		{"fresh_hook_working_kept", meshd.StatusWorking, meshd.SourceHook, 10 * time.Second, meshd.StatusWorking, meshd.SourceHook},
		{"stale_hook_working_idles", meshd.StatusWorking, meshd.SourceHook, 120 * time.Second, meshd.StatusIdle, meshd.SourceJSONL},
		{"manual_working_idles", meshd.StatusWorking, meshd.SourceManual, 0, meshd.StatusIdle, meshd.SourceJSONL},
		{"dnd_untouched", meshd.StatusDND, meshd.SourceManual, 300 * time.Second, meshd.StatusDND, meshd.SourceManual},
		{"hook_dnd_untouched", meshd.StatusDND, meshd.SourceHook, 300 * time.Second, meshd.StatusDND, meshd.SourceHook},
		{"idle_jsonl_stays", meshd.StatusIdle, meshd.SourceJSONL, 0, meshd.StatusIdle, meshd.SourceJSONL},
	}
	f := newFixture(t)
	id := f.attach(f.attachReq(f.bob, "s1", "")).Presence.ID
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.exec(`UPDATE mesh.presence SET status = $2, status_source = $3,
	status_updated_at = now() - make_interval(secs => $4) WHERE id = $1`, id, string(tt.status), string(tt.source), tt.age.Seconds())
			got, err := f.s.RefreshStatus(f.ctx, id, window, meshd.StatusIdle)
			if err != nil {
				t.Fatal(err)
			}
			p := f.presence(id)
			if got != tt.want || p.Status != tt.want || p.StatusSource != tt.wantSource {
				t.Fatalf("got %s (row %s/%s), want %s/%s", got, p.Status, p.StatusSource, tt.want, tt.wantSource)
			}
		})
	}
	_, err := f.s.RefreshStatus(f.ctx, "nope", window, meshd.StatusIdle)
	wantErr(t, err, meshd.ErrNotFound)

	// With JSONL_STATUS_DIR the transcript's verdict is written instead of
	// idle, still never over a fresh hook or a dnd.
	f.exec(`UPDATE mesh.presence SET status = 'idle', status_source = 'hook', status_updated_at = now() - interval '120 seconds' WHERE id = $1`, id)
	if got, err := f.s.RefreshStatus(f.ctx, id, window, meshd.StatusWorking); err != nil || got != meshd.StatusWorking || f.presence(id).StatusSource != meshd.SourceJSONL {
		t.Fatalf("stale hook + transcript working: %s %v", got, err)
	}
	f.exec(`UPDATE mesh.presence SET status = 'idle', status_source = 'hook', status_updated_at = now() WHERE id = $1`, id)
	if got, err := f.s.RefreshStatus(f.ctx, id, window, meshd.StatusWorking); err != nil || got != meshd.StatusIdle {
		t.Fatalf("fresh hook overridden by transcript: %s %v", got, err)
	}
}

// TTL sweep (B.6.6, B.17): stale working → idle/jsonl, dnd untouched.
func TestSweepStatusTTL(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rows := []struct {
		status meshd.Status
		source meshd.StatusSource
		age    int
		want   meshd.Status
	}{
		{meshd.StatusWorking, meshd.SourceHook, 120, meshd.StatusIdle},
		{meshd.StatusWorking, meshd.SourceManual, 10, meshd.StatusWorking},
		{meshd.StatusDND, meshd.SourceManual, 300, meshd.StatusDND},
		{meshd.StatusIdle, meshd.SourceHook, 300, meshd.StatusIdle},
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = f.attach(f.attachReq(f.bob, fmt.Sprint("s", i), "")).Presence.ID
		f.exec(`UPDATE mesh.presence SET status = $2, status_source = $3,
	status_updated_at = now() - make_interval(secs => $4) WHERE id = $1`, ids[i], string(r.status), string(r.source), r.age)
	}
	n, err := f.s.SweepStatusTTL(f.ctx, 60*time.Second, 30*time.Second)
	if err != nil || n != 1 {
		t.Fatalf("SweepStatusTTL = %d, %v; want 1", n, err)
	}
	for i, r := range rows {
		if p := f.presence(ids[i]); p.Status != r.want {
			t.Errorf("row %d: %s, want %s", i, p.Status, r.want)
		}
	}
}

// Ephemeral presences (A.3-32): absent from ListPeers; Detach ends them at
// once and reports no lease; a node lease ends them instead of leasing, so
// EvictExpiredLeases (peer_left) never returns them.
func TestEphemeralPresences(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	mk := func(sid string, ephemeral bool) meshd.AttachRequest {
		r := f.attachReq(f.bob, sid, "")
		r.Presence.NodeID, r.Presence.Ephemeral = "node-e", ephemeral
		r.Presence.ID = f.attach(r).Presence.ID
		return r
	}
	normal, closed, onNode := mk("normal", false), mk("one-shot", true), mk("one-shot-2", true)
	peers, err := f.s.ListPeers(f.ctx, f.mesh.ID)
	if err != nil || len(peers) != 1 || peers[0].ID != normal.Presence.ID {
		t.Fatalf("ListPeers = %+v, %v; want the normal presence only", peers, err)
	}
	if ok, err := f.s.Detach(f.ctx, closed.Presence.ID, closed.Presence.SocketID, time.Minute); ok || err != nil {
		t.Fatalf("ephemeral Detach = %v, %v; want false (no lease, no peer_state)", ok, err)
	}
	if p := f.presence(closed.Presence.ID); p.DisconnectedAt == nil || p.LeaseUntil != nil {
		t.Fatal("ephemeral close did not end the presence at once")
	}
	if n, err := f.s.LeaseNodePresences(f.ctx, "node-e", -time.Second); err != nil || n != 2 {
		t.Fatalf("LeaseNodePresences = %d, %v", n, err)
	}
	if p := f.presence(onNode.Presence.ID); p.DisconnectedAt == nil {
		t.Fatal("node lease left the ephemeral presence live")
	}
	evicted, err := f.s.EvictExpiredLeases(f.ctx)
	if err != nil || len(evicted) != 1 || evicted[0].ID != normal.Presence.ID {
		t.Fatalf("EvictExpiredLeases = %+v, %v; want the normal presence only", evicted, err)
	}
}

// mesh.claim_targets (the reattach's claim release inside attach_presence)
// lists the same targets as claimTargets, which the claim reads.
func TestClaimTargetsSQLMatchesGo(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		member, session string
		groups          []meshd.Group
	}{
		{"mk", "", nil},
		{"mk", "sk", []meshd.Group{{Name: "a/b/c"}, {Name: "a/x"}}},
		{"", "sk", []meshd.Group{{Name: "x//y/"}, {Name: "/lead"}, {Name: ""}, {Name: "solo", Role: "lead"}}},
	}
	for _, c := range cases {
		groups, err := json.Marshal(nonNilGroups(c.groups))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		if err := f.s.pool.QueryRow(f.ctx, "SELECT mesh.claim_targets($1, $2, $3::jsonb)",
			c.member, nullIfEmpty(c.session), string(groups)).Scan(&got); err != nil {
			t.Fatal(err)
		}
		names := make([]string, 0, len(c.groups))
		for _, g := range c.groups {
			names = append(names, g.Name)
		}
		want := claimTargets(meshd.ClaimRequest{MemberPubkey: c.member, SessionPubkey: c.session, Groups: names})
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%+v: SQL %q, Go %q", c, got, want)
		}
	}
}

// attach_presence runs its statements with generic plans that read by key
// (migration 0026): its slot pick and presence lookup were planned afresh on
// every hello. A later migration that re-creates the function must keep
// the settings.
func TestAttachFunctionUsesGenericPlans(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var cfg []string
	if err := f.s.pool.QueryRow(f.ctx, `SELECT proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'mesh' AND p.proname = 'attach_presence'`).Scan(&cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"plan_cache_mode=force_generic_plan", "enable_seqscan=off"} {
		if !slices.Contains(cfg, want) {
			t.Errorf("attach_presence settings %v lack %s", cfg, want)
		}
	}
	// Its generic plans are made at a backend's first hello, often on a
	// presence table of one page, where the planner costs every index whose
	// predicate the statement implies the same. An index over all live rows
	// that does not lead with mesh_id can then become a mesh count's plan
	// until the next ANALYZE (970 buffer reads per hello instead of ~50 in
	// a burst of hellos, migration 0027), so a new index on live presences
	// names its own column in its predicate.
	var idx []string
	if err := f.s.pool.QueryRow(f.ctx, `SELECT array_agg(c.relname::text ORDER BY c.relname)
FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
WHERE x.indrelid = 'mesh.presence'::regclass AND pg_get_expr(x.indpred, x.indrelid) = '(disconnected_at IS NULL)'`).Scan(&idx); err != nil {
		t.Fatal(err)
	}
	if want := []string{"presence_mesh_live_idx", "presence_mesh_slot_idx", "presence_node_live_idx"}; !slices.Equal(idx, want) {
		t.Errorf("indexes over all live presences: %v; want %v", idx, want)
	}
}
