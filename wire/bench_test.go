package wire

import (
	"crypto/ed25519"
	"encoding/json"
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
