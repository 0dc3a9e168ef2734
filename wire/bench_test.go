package wire

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// BenchmarkCheckHelloSignature measures B.2 steps 3a-3c (skew, shape,
// ed25519 verify) for one hello: the CPU cost of every handshake.
func BenchmarkCheckHelloSignature(b *testing.B) {
	seed := make([]byte, 32)
	seed[0] = 7
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	now := time.Now()
	ts := float64(now.UnixMilli())
	pubHex := hexOf(pub)
	h := &Hello{MeshID: "mesh-bench", MemberID: "member-bench", Pubkey: pubHex,
		Timestamp: json.RawMessage(FormatJSNumber(ts))}
	h.Signature = Sign(priv, HelloCanonical(h.MeshID, h.MemberID, h.Pubkey, ts))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := CheckHelloSignature(h, now); r != OK {
			b.Fatal(r)
		}
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// BenchmarkDecodeFrame measures what the broker's read loop does with every
// inbound frame before its handler runs (broker/dispatch.go): the envelope,
// the NUL check, then the frame itself — for the two frames of the
// delivery road, a send (a sealed 64-byte DM) and a client_ack.
func BenchmarkDecodeFrame(b *testing.B) {
	send := []byte(`{"type":"send","id":"c0ffee01","targetSpec":"` + strings.Repeat("ab", 32) +
		`","priority":"now","nonce":"` + strings.Repeat("n", 32) + `","ciphertext":"` + strings.Repeat("Q", 152) +
		`","client_message_id":"4f1c2a9e-0c5e-4d7b-9a51-3e2f1b6c7d80"}`)
	ack := []byte(`{"type":"client_ack","clientMessageId":"4f1c2a9e-0c5e-4d7b-9a51-3e2f1b6c7d80",` +
		`"brokerMessageId":"18ed320e73d18309afdc30fb51b858dc"}`)
	decode := func(b *testing.B, data []byte, v any) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var env Envelope
			if err := json.Unmarshal(data, &env); err != nil || env.Type == "" || HasNUL(data) {
				b.Fatalf("envelope: %v", err)
			}
			if err := json.Unmarshal(data, v); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("send", func(b *testing.B) { decode(b, send, &Send{}) })
	b.Run("client_ack", func(b *testing.B) { decode(b, ack, &ClientAck{}) })
}
