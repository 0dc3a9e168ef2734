package broker

import "testing"

// The write record pairs each written text frame with what was queued, in
// order; a frame melody refused is taken back so the pairing holds.
func TestWriteRecordFIFO(t *testing.T) {
	var r writeRecord
	r.push("")
	r.push("row-1")
	r.push("row-2")
	r.unpush() // row-2 was refused by a full buffer
	r.push("")
	want := []string{"", "row-1", ""}
	for i, w := range want {
		got, ok := r.pop()
		if !ok || got != w {
			t.Fatalf("pop %d = %q, %v; want %q", i, got, ok, w)
		}
	}
	if _, ok := r.pop(); ok || r.len() != 0 {
		t.Fatalf("record not empty: %d", r.len())
	}
	for i := range 5000 { // compaction keeps order
		r.push(string(rune('a' + i%26)))
		if i%2 == 1 {
			r.pop()
		}
	}
	if r.len() != 2500 {
		t.Fatalf("len %d, want 2500", r.len())
	}
	if got, _ := r.pop(); got != string(rune('a'+2500%26)) {
		t.Fatalf("head after compaction = %q", got)
	}
}
