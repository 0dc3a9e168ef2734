package seal

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSealOpenRotateAndTamper(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	old := New(k1)
	v, err := old.Seal("owner secret", "mesh.owner_secret_key:m1")
	if err != nil || !strings.HasPrefix(v, "enc1:"+KeyID(k1)+":") || strings.Contains(v, "owner secret") {
		t.Fatalf("sealed %q %v", v, err)
	}
	if pt, err := old.Open(v, "mesh.owner_secret_key:m1"); err != nil || pt != "owner secret" {
		t.Fatalf("open %q %v", pt, err)
	}
	if _, err := old.Open(v, "mesh.owner_secret_key:m2"); err == nil {
		t.Fatal("opened under another row's associated data")
	}
	if _, err := old.Open(v[:len(v)-2]+"AA", "mesh.owner_secret_key:m1"); err == nil {
		t.Fatal("opened a tampered value")
	}
	rotated := New(k2, k1)
	if pt, err := rotated.Open(v, "mesh.owner_secret_key:m1"); err != nil || pt != "owner secret" {
		t.Fatalf("previous key: %q %v", pt, err)
	}
	if _, err := New(k2).Open(v, "mesh.owner_secret_key:m1"); !errors.Is(err, ErrNoKey) {
		t.Fatalf("unknown key: %v", err)
	}
	var none *Keyring
	if _, err := none.Open(v, "x"); !errors.Is(err, ErrNoKey) {
		t.Fatalf("nil keyring: %v", err)
	}
	if pt, err := none.Open("plain", "x"); err != nil || pt != "plain" {
		t.Fatalf("plaintext row: %q %v", pt, err)
	}
	if _, err := ParseKey("abc"); err == nil {
		t.Fatal("short key accepted")
	}
}

// BenchmarkSealOpen is the CPU cost of one secret (a 128-hex owner key).
func BenchmarkSealOpen(b *testing.B) {
	kr := New(bytes.Repeat([]byte{1}, 32))
	secret := strings.Repeat("ab", 64)
	b.Run("seal", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_, _ = kr.Seal(secret, "mesh.mesh.owner_secret_key:m")
		}
	})
	v, _ := kr.Seal(secret, "mesh.mesh.owner_secret_key:m")
	b.Run("open", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_, _ = kr.Open(v, "mesh.mesh.owner_secret_key:m")
		}
	})
}
