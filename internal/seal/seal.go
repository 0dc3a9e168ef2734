// Package seal encrypts secrets at rest (issue 12 item 7): mesh owner
// signing keys, root keys and invite tokens. A sealed value is
//
//	enc1:<key id>:<base64url(nonce ‖ XChaCha20-Poly1305 ciphertext)>
//
// so every row names the key that sealed it and the key can be rotated
// (`meshd keys rotate`). The associated data binds a value to its column
// and row, so a DB writer cannot swap one mesh's sealed secret into
// another's. A value without the prefix is a plaintext row from before
// encryption; Open returns it as is and the store re-seals it at start.
package seal

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

const prefix = "enc1:"

// ErrNoKey is returned when a sealed value is read without a keyring, or
// with one that lacks the value's key.
var ErrNoKey = errors.New("seal: no key for this value (BROKER_ENCRYPTION_KEY / BROKER_ENCRYPTION_KEYS_PREVIOUS)")

// Keyring seals with its current key and opens with any of its keys. A nil
// *Keyring seals nothing (plaintext, development without a key) and opens
// only plaintext.
type Keyring struct {
	current string // key id
	keys    map[string][]byte
}

// ParseKey decodes a 32-byte key given as 64 hex characters.
func ParseKey(s string) ([]byte, error) {
	k, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(k) != chacha20poly1305.KeySize {
		return nil, errors.New("must be 64 hex characters (32 random bytes, e.g. `openssl rand -hex 32`)")
	}
	return k, nil
}

// KeyID is the id rows carry for key: the first 8 hex characters of
// SHA-256("meshd-seal:" ‖ key), which names the key without revealing it.
func KeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("meshd-seal:"), key...))
	return hex.EncodeToString(sum[:4])
}

// New returns a keyring sealing with current and opening with current and
// previous (older keys kept during a rotation).
func New(current []byte, previous ...[]byte) *Keyring {
	kr := &Keyring{current: KeyID(current), keys: map[string][]byte{}}
	for _, k := range append([][]byte{current}, previous...) {
		kr.keys[KeyID(k)] = k
	}
	return kr
}

// CurrentID is the id of the sealing key ("" for a nil keyring).
func (kr *Keyring) CurrentID() string {
	if kr == nil {
		return ""
	}
	return kr.current
}

// Sealed reports whether v is a sealed value, and under which key id.
func Sealed(v string) (keyID string, ok bool) {
	if !strings.HasPrefix(v, prefix) {
		return "", false
	}
	id, _, ok := strings.Cut(v[len(prefix):], ":")
	return id, ok
}

// Seal encrypts plaintext for the row named by aad; "" stays "" and a nil
// keyring returns plaintext unchanged.
func (kr *Keyring) Seal(plaintext, aad string) (string, error) {
	if kr == nil || plaintext == "" {
		return plaintext, nil
	}
	aead, err := chacha20poly1305.NewX(kr.keys[kr.current])
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	_, _ = rand.Read(nonce)
	out := aead.Seal(nonce, nonce, []byte(plaintext), []byte(aad))
	return prefix + kr.current + ":" + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts a sealed v for the row named by aad; a plaintext v is
// returned as is.
func (kr *Keyring) Open(v, aad string) (string, error) {
	id, ok := Sealed(v)
	if !ok {
		return v, nil
	}
	if kr == nil || kr.keys[id] == nil {
		return "", fmt.Errorf("%w: key id %s", ErrNoKey, id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(v[len(prefix)+len(id)+1:])
	aead, aerr := chacha20poly1305.NewX(kr.keys[id])
	if err != nil || aerr != nil || len(raw) < aead.NonceSize() {
		return "", errors.New("seal: malformed sealed value")
	}
	pt, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(aad))
	if err != nil {
		return "", errors.New("seal: sealed value does not authenticate (wrong key, row or tampering)")
	}
	return string(pt), nil
}
