package store

import (
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd"
)

// Member lookup for hello (B.2 step 4): exact pubkey, revoked distinction.
func TestLookupMember(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// dave: revoked only. erin: revoked row plus a newer active row.
	dave := f.createMember(f.mesh.ID, key('d'), "dave", "member")
	f.attach(f.attachReq(dave, "dave", key('4')))
	if err := f.s.RevokeMember(f.ctx, f.mesh.ID, dave.ID); err != nil {
		t.Fatal(err)
	}
	erinOld := f.createMember(f.mesh.ID, key('e'), "erin-old", "member")
	if err := f.s.RevokeMember(f.ctx, f.mesh.ID, erinOld.ID); err != nil {
		t.Fatal(err)
	}
	erin := f.createMember(f.mesh.ID, key('e'), "erin", "member")
	archived := f.createMesh("t-archived")
	frank := f.createMember(archived.ID, key('f'), "frank", "member")
	f.exec("UPDATE mesh.mesh SET archived_at = now() WHERE id = $1", archived.ID)

	tests := []struct {
		name        string
		meshID      string
		pubkey      string
		wantID      string
		wantRevoked bool
		wantErr     error
	}{
		{"active", f.mesh.ID, f.alice.Pubkey, f.alice.ID, false, nil},
		{"revoked_only", f.mesh.ID, dave.Pubkey, dave.ID, true, nil},
		{"active_preferred_over_revoked", f.mesh.ID, erin.Pubkey, erin.ID, false, nil},
		{"unknown_pubkey", f.mesh.ID, key('9'), "", false, meshd.ErrNotFound},
		{"uppercase_pubkey_is_exact", f.mesh.ID, strings.ToUpper(f.alice.Pubkey), "", false, meshd.ErrNotFound},
		{"member_of_other_mesh", f.mesh.ID, f.carol.Pubkey, "", false, meshd.ErrNotFound},
		{"unknown_mesh", "no-such-mesh", f.alice.Pubkey, "", false, meshd.ErrNotFound},
		{"archived_mesh", archived.ID, frank.Pubkey, "", false, meshd.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, m, err := f.s.LookupMember(f.ctx, tt.meshID, tt.pubkey)
			if tt.wantErr != nil {
				wantErr(t, err, tt.wantErr)
				return
			}
			if err != nil || m.ID != tt.wantID || (m.RevokedAt != nil) != tt.wantRevoked {
				t.Fatalf("LookupMember = %+v, %v", m, err)
			}
			if ms.ID != f.mesh.ID || ms.Slug != "t-main" || ms.Label() != "t-main mesh" || ms.OwnerUserID != "test-user-integration" {
				t.Fatalf("mesh = %+v", ms)
			}
		})
	}
}

func TestLookupMemberDecodesJSON(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m := meshd.Member{MeshID: f.mesh.ID, Pubkey: key('9'), DisplayName: "gina", RoleTag: "lead",
		DefaultGroups: []meshd.Group{{Name: "dev", Role: "lead"}, {Name: "ops"}}, MessageMode: "inbox",
		Grants: meshd.Grants{f.alice.Pubkey: {"read"}, f.bob.Pubkey: {}}, UserID: "u-1"}
	if err := f.s.CreateMember(f.ctx, &m); err != nil {
		t.Fatal(err)
	}
	_, got, err := f.s.LookupMember(f.ctx, f.mesh.ID, m.Pubkey)
	if err != nil {
		t.Fatal(err)
	}
	if got.Role != "member" || got.RoleTag != "lead" || got.MessageMode != "inbox" || got.UserID != "u-1" ||
		len(got.DefaultGroups) != 2 || got.DefaultGroups[0] != (meshd.Group{Name: "dev", Role: "lead"}) ||
		got.Grants.Allows(f.alice.Pubkey, "", "dm") || got.Grants.Allows(f.bob.Pubkey, "", "read") ||
		!got.Grants.Allows(key('0'), "", "dm") {
		t.Fatalf("member = %+v", got)
	}
}

// Direct recipient resolution (A.3-6).
func TestDirectRecipient(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	live := f.attachReq(f.bob, "live", key('1'))
	f.attach(live)
	leased := f.attachReq(f.bob, "leased", key('2'))
	pl := f.attach(leased).Presence
	if ok, _ := f.s.Detach(f.ctx, pl.ID, leased.Presence.SocketID, time.Minute); !ok {
		t.Fatal("detach")
	}
	gone := f.attachReq(f.alice, "gone", key('3'))
	pg := f.attach(gone).Presence
	f.exec("UPDATE mesh.presence SET disconnected_at = now() WHERE id = $1", pg.ID)
	dave := f.createMember(f.mesh.ID, key('d'), "dave", "member")
	f.attach(f.attachReq(dave, "dave", key('4')))
	if err := f.s.RevokeMember(f.ctx, f.mesh.ID, dave.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		target  string
		wantID  string
		wantErr error
	}{
		{"member_pubkey", f.alice.Pubkey, f.alice.ID, nil},
		{"live_session_pubkey", key('1'), f.bob.ID, nil},
		{"leased_session_pubkey", key('2'), f.bob.ID, nil},
		{"session_gone_past_grace", key('3'), "", meshd.ErrNotFound},
		{"revoked_member", dave.Pubkey, "", meshd.ErrNotFound},
		{"revoked_member_session_pubkey", key('4'), "", meshd.ErrNotFound},
		{"unknown", key('z'), "", meshd.ErrNotFound},
		{"other_mesh_member", f.carol.Pubkey, "", meshd.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := f.s.DirectRecipient(f.ctx, f.mesh.ID, tt.target)
			if tt.wantErr != nil {
				wantErr(t, err, tt.wantErr)
				return
			}
			if err != nil || m.ID != tt.wantID {
				t.Fatalf("DirectRecipient = %+v, %v; want %s", m, err, tt.wantID)
			}
		})
	}
	// The group commit's form: every case in one statement, results in
	// input order, plus a pair in carol's own mesh and a repeated target.
	meshes, targets := []string{}, []string{}
	for _, tt := range tests {
		meshes, targets = append(meshes, f.mesh.ID), append(targets, tt.target)
	}
	meshes, targets = append(meshes, f.carol.MeshID, f.mesh.ID), append(targets, f.carol.Pubkey, f.alice.Pubkey)
	got, err := f.s.DirectRecipients(f.ctx, meshes, targets)
	if err != nil || len(got) != len(targets) {
		t.Fatalf("DirectRecipients = %d rows, %v", len(got), err)
	}
	for i, tt := range tests {
		if id := idOf(got[i]); id != tt.wantID {
			t.Errorf("DirectRecipients[%d] (%s) = %q, want %q", i, tt.name, id, tt.wantID)
		}
	}
	if n := len(tests); idOf(got[n]) != f.carol.ID || idOf(got[n+1]) != f.alice.ID {
		t.Errorf("DirectRecipients tail = %q, %q", idOf(got[n]), idOf(got[n+1]))
	}
	if _, err := f.s.DirectRecipients(f.ctx, meshes, targets[1:]); err == nil {
		t.Error("DirectRecipients with mismatched arrays: no error")
	}
}

func idOf(m *meshd.Member) string {
	if m == nil {
		return ""
	}
	return m.ID
}

func TestMemberGrants(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(`UPDATE mesh.member SET peer_grants = $2::jsonb WHERE id = $1`, f.bob.ID, `{"`+f.alice.Pubkey+`":["dm"]}`)
	got, err := f.s.MemberGrants(f.ctx, f.mesh.ID, []string{f.alice.ID, f.bob.ID, f.carol.ID, "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[f.alice.ID]) != 0 || !got[f.bob.ID].Allows(f.alice.Pubkey, "", "dm") ||
		got[f.bob.ID].Allows(f.alice.Pubkey, "", "broadcast") {
		t.Fatalf("MemberGrants = %v", got)
	}
	if got, err := f.s.MemberGrants(f.ctx, f.mesh.ID, nil); err != nil || len(got) != 0 {
		t.Fatalf("no ids: %v, %v", got, err)
	}
}

func TestCreateConflicts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dup := meshd.Mesh{Slug: "t-main"}
	wantErr(t, f.s.CreateMesh(f.ctx, &dup), ErrConflict)
	f.exec("UPDATE mesh.mesh SET archived_at = now() WHERE id = $1", f.mesh.ID)
	if err := f.s.CreateMesh(f.ctx, &meshd.Mesh{Slug: "t-main"}); err != nil {
		t.Fatalf("archived mesh still holds its slug: %v", err)
	}
	for range 2 { // empty slugs never collide
		if err := f.s.CreateMesh(f.ctx, &meshd.Mesh{Name: "unnamed"}); err != nil {
			t.Fatal(err)
		}
	}
	twin := meshd.Member{MeshID: f.other.ID, Pubkey: f.carol.Pubkey}
	wantErr(t, f.s.CreateMember(f.ctx, &twin), ErrConflict)
	wantErr(t, f.s.RevokeMember(f.ctx, f.mesh.ID, f.carol.ID), meshd.ErrNotFound)
	if err := f.s.RevokeMember(f.ctx, f.other.ID, f.carol.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.s.CreateMember(f.ctx, &twin); err != nil {
		t.Fatalf("rejoin after revoke: %v", err)
	}
}
