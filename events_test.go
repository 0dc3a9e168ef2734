package meshd

import (
	"encoding/json"
	"testing"
)

// The envelope's JSON is the inter-replica format: field names pinned, and
// a push or frame travels verbatim.
func TestMeshEventEncoding(t *testing.T) {
	t.Parallel()
	data, err := MeshEvent{Kind: MeshEventBroadcast, Push: json.RawMessage(`{"type":"push"}`), Priority: "now",
		Target: "@ops", SenderMemberID: "m", ExcludePresenceID: "p"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"broadcast","push":{"type":"push"},"priority":"now","target":"@ops","senderMemberId":"m","excludePresenceId":"p"}`
	if string(data) != want {
		t.Fatalf("encoded %s\nwant    %s", data, want)
	}
	if _, err := (MeshEvent{Kind: MeshEventFrame, Frame: json.RawMessage(`{not json`)}).Encode(); err == nil {
		t.Fatal("an invalid frame encoded")
	}
	if ev, err := MeshFrameEvent(json.RawMessage(`{"type":"push","subtype":"webhook"}`)); err != nil || string(ev) != `{"kind":"frame","frame":{"type":"push","subtype":"webhook"}}` {
		t.Fatalf("MeshFrameEvent = %s, %v", ev, err)
	}
	var archived MeshEvent
	if err := json.Unmarshal([]byte(MeshArchivedEvent), &archived); err != nil || archived.Kind != MeshEventArchived {
		t.Fatalf("MeshArchivedEvent decodes to %+v, %v", archived, err)
	}
}

func TestMulticastTargets(t *testing.T) {
	t.Parallel()
	groups := []Group{{Name: "eng/backend"}}
	for target, want := range map[string][2]bool{
		"*": {true, true}, "@all": {true, true}, "@eng": {true, true}, "@eng/backend": {true, true},
		"@eng/front": {true, false}, "@engineering": {true, false}, "abcd": {false, false},
	} {
		if got := IsMulticast(target); got != want[0] {
			t.Errorf("IsMulticast(%q) = %v", target, got)
		}
		if want[0] {
			if got := InTarget(groups, target); got != want[1] {
				t.Errorf("InTarget(eng/backend, %q) = %v", target, got)
			}
		}
	}
}
