package collab

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"strings"
	"testing"

	"golang.org/x/crypto/curve25519"
)

// The public-key conversion must agree with the X25519 key derived from the
// ed25519 secret (libsodium's sk_to_curve25519), for any key.
func TestEd25519PublicToX25519(t *testing.T) {
	for range 50 {
		pub, sec, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		h := sha512.Sum512(sec.Seed())
		h[0] &= 248
		h[31] = h[31]&127 | 64
		want, err := curve25519.X25519(h[:32], curve25519.Basepoint)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ed25519PublicToX25519(hex.EncodeToString(pub))
		if err != nil || hex.EncodeToString(got[:]) != hex.EncodeToString(want) {
			t.Fatalf("conversion of %x: %x, %v; want %x", pub, got, err, want)
		}
	}
	// Not keys: bad hex, wrong length, y >= p, the identity (y = 1), and a
	// y with no x on the curve (y = 2).
	bad := []string{"zz", strings.Repeat("ab", 31), strings.Repeat("ff", 31) + "7f",
		"01" + strings.Repeat("00", 31), "02" + strings.Repeat("00", 31)}
	for _, k := range bad {
		if _, err := ed25519PublicToX25519(k); err == nil {
			t.Errorf("%s accepted", k)
		}
	}
	if _, ok, err := sealTopicKey("02" + strings.Repeat("00", 31)); ok || err != nil {
		t.Errorf("sealed for a non-key: %v %v", ok, err)
	}
}
