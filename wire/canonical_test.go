package wire

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"testing"
)

// Vectors of docs/protocol.md B.2 and B.3 (normative).
const (
	parentPubHex  = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
	sessionPubHex = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394"
	helloSigHex   = "77a1d6d9568c0b8430d365fbbe59e9affa4ed78736511dcea5ad13856c6b2452e914abef5a3114dfdb69927048204264820a3d4c05ead4888d782f4cfa4cf908"
	attestSigHex  = "69ad9d7955fa70131f8970074e061ab1df4819b845995840309ca6f0bea5f34409c778df201bb5672f715dce1986b23f7616ca209b4f4217e4c86814f1b9d100"
	sessSigHex    = "ab995f00475de270a2a88aeade18061b194fde18a2697a6360a0a4cf8ff6af9b47f2944a71a6df9438af4b764d429d3c02cb074e07f2a93dc90812ae0dd7a20c"
	vectorTS      = 1717459200000
	vectorExpires = 1717502400000
)

// seedKey returns the ed25519 key whose seed is 32 bytes of b.
func seedKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

func pubHex(k ed25519.PrivateKey) string {
	return hex.EncodeToString(k.Public().(ed25519.PublicKey))
}

func TestHelloVector(t *testing.T) {
	t.Parallel()
	parent := seedKey(0x01)
	if got := pubHex(parent); got != parentPubHex {
		t.Fatalf("pubkey = %s, want %s", got, parentPubHex)
	}
	// libsodium's secret key is seed‖pubkey, which is Go's PrivateKey.
	if got, want := hex.EncodeToString(parent), "0101010101010101010101010101010101010101010101010101010101010101"+parentPubHex; got != want {
		t.Fatalf("secret key = %s, want %s", got, want)
	}
	canon := HelloCanonical("mesh-x", "member-y", parentPubHex, vectorTS)
	if want := "mesh-x|member-y|" + parentPubHex + "|1717459200000"; canon != want {
		t.Fatalf("canonical = %q, want %q", canon, want)
	}
	if got := Sign(parent, canon); got != helloSigHex {
		t.Fatalf("signature = %s, want %s", got, helloSigHex)
	}
	if !VerifyHex(parentPubHex, helloSigHex, canon) {
		t.Fatal("vector signature does not verify")
	}
}

func TestSessionVectors(t *testing.T) {
	t.Parallel()
	parent, session := seedKey(0x01), seedKey(0x02)
	if got := pubHex(session); got != sessionPubHex {
		t.Fatalf("session pubkey = %s, want %s", got, sessionPubHex)
	}
	att := AttestationCanonical(parentPubHex, sessionPubHex, vectorExpires)
	if want := "claudemesh-session-attest|" + parentPubHex + "|" + sessionPubHex + "|1717502400000"; att != want {
		t.Fatalf("attestation canonical = %q, want %q", att, want)
	}
	if got := Sign(parent, att); got != attestSigHex {
		t.Fatalf("attestation signature = %s, want %s", got, attestSigHex)
	}
	sh := SessionHelloCanonical("mesh-x", parentPubHex, sessionPubHex, vectorTS)
	if want := "claudemesh-session-hello|mesh-x|" + parentPubHex + "|" + sessionPubHex + "|1717459200000"; sh != want {
		t.Fatalf("session hello canonical = %q, want %q", sh, want)
	}
	if got := Sign(session, sh); got != sessSigHex {
		t.Fatalf("session hello signature = %s, want %s", got, sessSigHex)
	}
}

func TestVerifyHexRejects(t *testing.T) {
	t.Parallel()
	msg := HelloCanonical("mesh-x", "member-y", parentPubHex, vectorTS)
	upper := func(s string) string { return string(bytes.ToUpper([]byte(s))) }
	tests := []struct {
		name     string
		pub, sig string
		want     bool
	}{
		{"valid", parentPubHex, helloSigHex, true},
		{"valid_uppercase_hex", upper(parentPubHex), upper(helloSigHex), true},
		{"short_pubkey", parentPubHex[:62], helloSigHex, false},
		{"short_signature", parentPubHex, helloSigHex[:126], false},
		{"non_hex_pubkey", "zz" + parentPubHex[2:], helloSigHex, false},
		{"non_hex_signature", parentPubHex, "zz" + helloSigHex[2:], false},
		{"other_key", sessionPubHex, helloSigHex, false},
		{"flipped_bit", parentPubHex, "87" + helloSigHex[2:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifyHex(tt.pub, tt.sig, msg); got != tt.want {
				t.Fatalf("VerifyHex = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestVerifyHexSmallOrder shows why VerifyHex does not just call
// ed25519.Verify: for a small-order public key, Go accepts the signature
// R = identity, S = 0 for about one message in eight (one in one for the
// identity), libsodium and VerifyHex never do. Finding such a message also
// proves each blocklist entry really is a point of small order.
func TestVerifyHexSmallOrder(t *testing.T) {
	t.Parallel()
	sig := make([]byte, ed25519.SignatureSize)
	sig[0] = 1 // R = identity, S = 0
	sigHex := hex.EncodeToString(sig)
	for i, bad := range smallOrder {
		pub := bad[:]
		t.Run(hex.EncodeToString(pub[:4]), func(t *testing.T) {
			if !isCanonicalPoint(pub) {
				if VerifyHex(hex.EncodeToString(pub), sigHex, "m") {
					t.Fatal("non-canonical small-order key accepted")
				}
				return
			}
			found := false
			for n := range 256 {
				msg := fmt.Sprintf("m%d", n)
				if !ed25519.Verify(pub, []byte(msg), sig) {
					continue
				}
				found = true
				if VerifyHex(hex.EncodeToString(pub), sigHex, msg) {
					t.Fatalf("entry %d: VerifyHex accepted a forgery that Go accepts", i)
				}
			}
			if !found {
				t.Fatalf("entry %d: no forgery found; is it really of small order?", i)
			}
		})
	}
}

func TestIsCanonicalPoint(t *testing.T) {
	t.Parallel()
	p := fieldPrime(0)
	pm1 := fieldPrime(-1)
	if isCanonicalPoint(p[:]) {
		t.Error("y = p reported canonical")
	}
	if !isCanonicalPoint(pm1[:]) {
		t.Error("y = p-1 reported non-canonical")
	}
	p[31] |= 0x80 // sign bit does not matter
	if isCanonicalPoint(p[:]) {
		t.Error("y = p with sign bit reported canonical")
	}
	pub, _ := hex.DecodeString(parentPubHex)
	if !isCanonicalPoint(pub) {
		t.Error("vector pubkey reported non-canonical")
	}
}
