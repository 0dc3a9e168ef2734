package store

import (
	"testing"

	"github.com/meshd/meshd"
)

// A row's replyToId, topic and body version come back from the claim as
// they went in, through the group commit and through the single-row
// Enqueue; a row without them claims empty values (NULL columns).
func TestQueueReplyAndTopicFields(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	row := func(ct string) *meshd.QueuedMessage {
		return &meshd.QueuedMessage{MeshID: f.mesh.ID, SenderMemberID: f.alice.ID, TargetSpec: f.bob.Pubkey, Nonce: "n", Ciphertext: ct}
	}
	plain, reply, topic := row("plain"), row("reply"), row("topic")
	reply.ReplyToID = "parent-1"
	topic.Topic, topic.BodyVersion, topic.ReplyToID = "ops", 2, "parent-2"
	if err := f.s.EnqueueBatch(f.ctx, []*meshd.QueuedMessage{plain, reply, topic}, []bool{false, false, false}); err != nil {
		t.Fatal(err)
	}
	single := row("single")
	single.Topic, single.BodyVersion = "ops", 1
	if err := f.s.Enqueue(f.ctx, single, false); err != nil {
		t.Fatal(err)
	}
	type fields struct {
		reply, topic string
		bv           int
	}
	want := map[string]fields{
		"plain": {}, "reply": {reply: "parent-1"}, "topic": {"parent-2", "ops", 2}, "single": {topic: "ops", bv: 1},
	}
	got := f.claimFor(f.bob, "p1", allPrios)
	if len(got) != len(want) {
		t.Fatalf("claimed %d rows, want %d", len(got), len(want))
	}
	for _, d := range got {
		if w, g := want[d.Ciphertext], (fields{d.ReplyToID, d.Topic, d.BodyVersion}); g != w {
			t.Errorf("%s: got %+v, want %+v", d.Ciphertext, g, w)
		}
	}
}
