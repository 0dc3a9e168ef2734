package client

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/curve25519"
)

func seedIdentity(t testing.TB, b byte) Identity {
	t.Helper()
	id, err := IdentityFromSeed(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestB12Vector pins the ed25519→X25519 vector of docs/protocol.md B.12.
func TestB12Vector(t *testing.T) {
	id := seedIdentity(t, 0x01)
	if want := "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"; id.Pubkey != want {
		t.Fatalf("pubkey %s, want %s", id.Pubkey, want)
	}
	if want := strings.Repeat("01", 32) + id.Pubkey; id.SecretHex() != want {
		t.Fatalf("secret layout %s", id.SecretHex())
	}
	edPub, _ := hex.DecodeString(id.Pubkey)
	pub, err := PublicToCurve25519(edPub)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(pub); got != "1b1b58dd50ea14b60da17b790cd02754d970c9bab864ebb3c0f3016fe51d3f57" {
		t.Fatalf("x25519 public %s", got)
	}
	sec := SecretToCurve25519(id.Secret)
	if got := hex.EncodeToString(sec); got != "58e86efb75fa4e2c410f46e16de9f6acae1a1703528651b69bc176c088bef36e" {
		t.Fatalf("x25519 secret %s", got)
	}
	derived, err := curve25519.X25519(sec, curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(derived, pub) {
		t.Fatalf("X25519(secret, 9) = %x, want %x", derived, pub)
	}
}

// TestConversionAgrees checks, for random keys, that converting the public
// key gives the public key of the converted secret.
func TestConversionAgrees(t *testing.T) {
	for range 20 {
		id := GenerateIdentity()
		edPub, _ := hex.DecodeString(id.Pubkey)
		pub, err := PublicToCurve25519(edPub)
		if err != nil {
			t.Fatal(err)
		}
		derived, _ := curve25519.X25519(SecretToCurve25519(id.Secret), curve25519.Basepoint)
		if !bytes.Equal(pub, derived) {
			t.Fatalf("%s: converted public %x != derived %x", id.Pubkey, pub, derived)
		}
	}
}

func TestPublicToCurve25519Rejects(t *testing.T) {
	le := func(h string) []byte { b, _ := hex.DecodeString(h); return b }
	// A point with y = 2 is not on the curve; a torsion point of order 8 is
	// on the curve but of small order; adding it to a valid key leaves the
	// prime-order subgroup.
	notOnCurve := make([]byte, 32)
	notOnCurve[0] = 2
	order8 := le("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	tests := []struct {
		name string
		in   []byte
	}{
		{"short", make([]byte, 31)},
		{"not_on_curve", notOnCurve},
		{"identity", le("0100000000000000000000000000000000000000000000000000000000000000")},
		{"order_2", le("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")},
		{"order_4", le("0000000000000000000000000000000000000000000000000000000000000000")},
		{"order_8", order8},
		{"non_canonical_y", le("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")},
		{"negative_zero_x", le("0100000000000000000000000000000000000000000000000000000000000080")},
		{"mixed_order", mixedOrder(t, order8)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := PublicToCurve25519(tt.in); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("err = %v, want ErrInvalidKey", err)
			}
		})
	}
	// A valid key still converts (shows the table is not rejecting all).
	id := GenerateIdentity()
	pub, _ := hex.DecodeString(id.Pubkey)
	if _, err := PublicToCurve25519(pub); err != nil {
		t.Fatal(err)
	}
}

// mixedOrder returns the encoding of B + T for the base point B and a
// torsion point T: on the curve, not of small order, outside the subgroup.
func mixedOrder(t *testing.T, torsion []byte) []byte {
	t.Helper()
	tp, err := new(edwards25519.Point).SetBytes(torsion)
	if err != nil {
		t.Fatal(err)
	}
	return new(edwards25519.Point).Add(edwards25519.NewGeneratorPoint(), tp).Bytes()
}

func TestIdentityFromSecretHex(t *testing.T) {
	id := seedIdentity(t, 0x01)
	got, err := IdentityFromSecretHex(id.SecretHex())
	if err != nil || got.Pubkey != id.Pubkey {
		t.Fatalf("round trip: %v %v", got.Pubkey, err)
	}
	if got, err := IdentityFromSecretHex(strings.Repeat("01", 32)); err != nil || got.Pubkey != id.Pubkey {
		t.Fatalf("seed form: %v %v", got.Pubkey, err)
	}
	bad := strings.Repeat("01", 32) + strings.Repeat("00", 32)
	if _, err := IdentityFromSecretHex(bad); err == nil {
		t.Fatal("mismatched public half accepted")
	}
	if _, err := IdentityFromSecretHex("zz"); err == nil {
		t.Fatal("bad hex accepted")
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	alice, bob := GenerateIdentity(), GenerateIdentity()
	msg := []byte("hello bob — ünïcode")
	nonce, ct, err := SealDM(msg, bob.Pubkey, alice)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := base64.StdEncoding.DecodeString(nonce)
	if err != nil || len(nb) != 24 {
		t.Fatalf("nonce %q is not 24 bytes of padded base64", nonce)
	}
	if cb, _ := base64.StdEncoding.DecodeString(ct); len(cb) != len(msg)+16 {
		t.Fatalf("ciphertext length %d, want %d", len(cb), len(msg)+16)
	}
	got, err := OpenDM(nonce, ct, alice.Pubkey, bob)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("open: %q %v", got, err)
	}
	// Empty plaintext round-trips to a non-nil empty slice.
	nonce, ct, _ = SealDM(nil, bob.Pubkey, alice)
	if got, err := OpenDM(nonce, ct, alice.Pubkey, bob); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty: %q %v", got, err)
	}
}

func TestOpenRejects(t *testing.T) {
	alice, bob, eve := GenerateIdentity(), GenerateIdentity(), GenerateIdentity()
	nonce, ct, _ := SealDM([]byte("secret"), bob.Pubkey, alice)
	raw, _ := base64.StdEncoding.DecodeString(ct)
	raw[len(raw)-1] ^= 1
	tampered := base64.StdEncoding.EncodeToString(raw)
	otherNonce, _ := EncodeBroadcast(nil)
	tests := []struct {
		name              string
		nonce, ct, sender string
		recipient         Identity
		want              error
	}{
		{"tampered_ciphertext", nonce, tampered, alice.Pubkey, bob, ErrDecrypt},
		{"wrong_recipient_key", nonce, ct, alice.Pubkey, eve, ErrDecrypt},
		{"wrong_sender_key", nonce, ct, eve.Pubkey, bob, ErrDecrypt},
		{"wrong_nonce", otherNonce, ct, alice.Pubkey, bob, ErrDecrypt},
		{"nonce_not_base64", "!!", ct, alice.Pubkey, bob, ErrDecrypt},
		{"short_nonce", "AAAA", ct, alice.Pubkey, bob, ErrDecrypt},
		{"ciphertext_not_base64", nonce, "@@", alice.Pubkey, bob, ErrDecrypt},
		{"sender_not_hex", nonce, ct, "system", bob, ErrInvalidKey},
		{"sender_uppercase", nonce, ct, strings.ToUpper(alice.Pubkey), bob, ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := OpenDM(tt.nonce, tt.ct, tt.sender, tt.recipient); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// The untouched message still opens after all that.
	if _, err := OpenDM(nonce, ct, alice.Pubkey, bob); err != nil {
		t.Fatal(err)
	}
}

// TestOpenFallbackOrder: a recipient with a session and a member key opens
// messages sealed to either, session first (B.12).
func TestOpenFallbackOrder(t *testing.T) {
	sender, member, session := GenerateIdentity(), GenerateIdentity(), GenerateIdentity()
	for _, to := range []Identity{session, member} {
		nonce, ct, _ := SealDM([]byte("to "+to.Pubkey[:8]), to.Pubkey, sender)
		got, err := OpenDMWith(nonce, ct, sender.Pubkey, session, member)
		if err != nil || string(got) != "to "+to.Pubkey[:8] {
			t.Fatalf("sealed to %s: %q %v", to.Pubkey[:8], got, err)
		}
	}
	nonce, ct, _ := SealDM([]byte("x"), member.Pubkey, sender)
	if _, err := OpenDMWith(nonce, ct, sender.Pubkey, session); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("session alone opened a member message: %v", err)
	}
	if _, err := OpenDMWith(nonce, ct, sender.Pubkey); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("no keys: %v", err)
	}
}

func TestBroadcastEncoding(t *testing.T) {
	nonce, ct := EncodeBroadcast([]byte("hi all"))
	if nb, _ := base64.StdEncoding.DecodeString(nonce); len(nb) != 24 {
		t.Fatalf("nonce %q", nonce)
	}
	if ct != "aGkgYWxs" {
		t.Fatalf("ciphertext %q, want base64 of plaintext", ct)
	}
	got, err := DecodeBroadcast(ct)
	if err != nil || string(got) != "hi all" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := DecodeBroadcast("%%%"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("bad base64: %v", err)
	}
}

func FuzzPublicToCurve25519(f *testing.F) {
	id := seedIdentity(f, 0x01)
	pub, _ := hex.DecodeString(id.Pubkey)
	f.Add(pub)
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := PublicToCurve25519(in)
		if err != nil {
			return
		}
		if len(in) != 32 || len(out) != 32 {
			t.Fatalf("accepted %d bytes, produced %d", len(in), len(out))
		}
	})
}

func FuzzOpenDM(f *testing.F) {
	alice, bob := seedIdentity(f, 0x01), seedIdentity(f, 0x02)
	nonce, ct, _ := SealDM([]byte("seed"), bob.Pubkey, alice)
	f.Add(nonce, ct)
	f.Fuzz(func(t *testing.T, nonce, ct string) {
		_, _ = OpenDM(nonce, ct, alice.Pubkey, bob)
	})
}

// BenchmarkPublicToCurve25519 is the per-peer cost of a first message to or
// from a key (the shared key is cached after it).
func BenchmarkPublicToCurve25519(b *testing.B) {
	pub, _ := hex.DecodeString(GenerateIdentity().Pubkey)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PublicToCurve25519(pub); err != nil {
			b.Fatal(err)
		}
	}
}
