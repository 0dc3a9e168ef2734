package collab

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// sealer encrypts secrets at rest with BROKER_ENCRYPTION_KEY: AES-256-GCM,
// stored as nonce (12 bytes) || ciphertext+tag. The additional data binds a
// blob to its row (mesh, owner, name) so blobs cannot be swapped between
// rows in the database.
type sealer struct {
	aead cipher.AEAD // immutable after newSealer
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("collab: config: EncryptionKey must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("collab: config: EncryptionKey: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("collab: config: EncryptionKey: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(plain, ad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plain, ad), nil
}

var errUnseal = errors.New("sealed secret does not open with this BROKER_ENCRYPTION_KEY")

func (s *sealer) open(blob, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(blob) < n+s.aead.Overhead() {
		return nil, errUnseal
	}
	out, err := s.aead.Open(nil, blob[:n], blob[n:], ad)
	if err != nil {
		return nil, errUnseal
	}
	return out, nil
}
