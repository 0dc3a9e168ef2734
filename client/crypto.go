package client

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"golang.org/x/crypto/nacl/box"
)

// Identity is an ed25519 keypair as claudemesh clients store it (B.12):
// Pubkey is 64 lowercase hex, Secret is the libsodium 64-byte layout
// seed ‖ public key, which is exactly Go's ed25519.PrivateKey.
type Identity struct {
	Pubkey string
	Secret ed25519.PrivateKey
}

// GenerateIdentity returns a fresh random identity (crypto_sign_keypair).
func GenerateIdentity() Identity {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil { // crypto/rand does not fail on supported platforms
		panic(fmt.Sprintf("client: ed25519 key generation: %v", err))
	}
	return identityFromPrivate(priv)
}

// IdentityFromSeed derives the identity of a 32-byte ed25519 seed.
func IdentityFromSeed(seed []byte) (Identity, error) {
	if len(seed) != ed25519.SeedSize {
		return Identity{}, fmt.Errorf("client: seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return identityFromPrivate(ed25519.NewKeyFromSeed(seed)), nil
}

// IdentityFromSecretHex parses a libsodium secret key as stored in
// ~/.claudemesh/config.json: 128 hex chars (seed ‖ pubkey). The embedded
// public half must match the seed. 64 hex chars are taken as a bare seed.
func IdentityFromSecretHex(s string) (Identity, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return Identity{}, fmt.Errorf("client: secret key: %w", err)
	}
	switch len(b) {
	case ed25519.SeedSize:
		return IdentityFromSeed(b)
	case ed25519.PrivateKeySize:
		id := identityFromPrivate(ed25519.NewKeyFromSeed(b[:ed25519.SeedSize]))
		if hex.EncodeToString(b[ed25519.SeedSize:]) != id.Pubkey {
			return Identity{}, fmt.Errorf("client: secret key: public half does not match seed")
		}
		return id, nil
	}
	return Identity{}, fmt.Errorf("client: secret key is %d bytes, want 64", len(b))
}

func identityFromPrivate(priv ed25519.PrivateKey) Identity {
	return Identity{Pubkey: hex.EncodeToString(priv.Public().(ed25519.PublicKey)), Secret: priv}
}

// SecretHex returns the 128-hex libsodium secret key.
func (id Identity) SecretHex() string { return hex.EncodeToString(id.Secret) }

// valid reports whether the identity is well formed and self-consistent.
func (id Identity) valid() error {
	if !isHex64(id.Pubkey) {
		return fmt.Errorf("pubkey must be 64 lowercase hex chars")
	}
	if len(id.Secret) != ed25519.PrivateKeySize {
		return fmt.Errorf("secret is %d bytes, want 64", len(id.Secret))
	}
	if hex.EncodeToString(id.Secret[ed25519.SeedSize:]) != id.Pubkey {
		return fmt.Errorf("secret does not belong to pubkey")
	}
	return nil
}

// SecretToCurve25519 is crypto_sign_ed25519_sk_to_curve25519 (B.12): the
// first 32 bytes of SHA-512(seed), clamped.
func SecretToCurve25519(edSecret ed25519.PrivateKey) []byte {
	h := sha512.Sum512(edSecret[:ed25519.SeedSize])
	out := make([]byte, 32)
	copy(out, h[:32])
	out[0] &= 248
	out[31] &= 127
	out[31] |= 64
	return out
}

// sharedKey is crypto_box_beforenm between a peer's ed25519 public key and
// our ed25519 secret, both converted to X25519.
func sharedKey(peerEdPub []byte, self ed25519.PrivateKey) (*[32]byte, error) {
	pub, err := PublicToCurve25519(peerEdPub)
	if err != nil {
		return nil, err
	}
	var peer, priv, shared [32]byte
	copy(peer[:], pub)
	copy(priv[:], SecretToCurve25519(self))
	box.Precompute(&shared, &peer, &priv)
	return &shared, nil
}

func decodePubkey(s string) ([]byte, error) {
	if !isHex64(s) {
		return nil, fmt.Errorf("%w: pubkey must be 64 lowercase hex chars", ErrInvalidKey)
	}
	b, _ := hex.DecodeString(s)
	return b, nil
}

func randomNonce() *[24]byte {
	var n [24]byte
	if _, err := rand.Read(n[:]); err != nil {
		panic(fmt.Sprintf("client: crypto/rand: %v", err))
	}
	return &n
}

// SealDM encrypts a direct message as real clients do (B.12):
// crypto_box_easy(plaintext, nonce, X25519(recipient), X25519(sender secret))
// with a random 24-byte nonce; both outputs are standard padded base64.
func SealDM(plaintext []byte, recipientEdPubHex string, sender Identity) (nonceB64, ciphertextB64 string, err error) {
	pub, err := decodePubkey(recipientEdPubHex)
	if err != nil {
		return "", "", err
	}
	key, err := sharedKey(pub, sender.Secret)
	if err != nil {
		return "", "", err
	}
	n, c := sealWith(key, plaintext)
	return n, c, nil
}

func sealWith(key *[32]byte, plaintext []byte) (nonceB64, ciphertextB64 string) {
	nonce := randomNonce()
	ct := box.SealAfterPrecomputation(nil, plaintext, nonce, key)
	return base64.StdEncoding.EncodeToString(nonce[:]), base64.StdEncoding.EncodeToString(ct)
}

// OpenDM decrypts a direct message from senderEdPubHex (push.senderPubkey)
// with the recipient's secret. It fails with ErrDecrypt when the box does
// not authenticate (tampered, or sealed to another key).
func OpenDM(nonceB64, ctB64, senderEdPubHex string, recipient Identity) ([]byte, error) {
	return OpenDMWith(nonceB64, ctB64, senderEdPubHex, recipient)
}

// OpenDMWith tries each recipient identity in order and returns the first
// plaintext that authenticates. Clients pass their session identity first,
// then their member identity (B.12 "session secret first, then member").
func OpenDMWith(nonceB64, ctB64, senderEdPubHex string, recipients ...Identity) ([]byte, error) {
	pub, err := decodePubkey(senderEdPubHex)
	if err != nil {
		return nil, err
	}
	return openWith(nonceB64, ctB64, func(i int) (*[32]byte, error) {
		if i >= len(recipients) {
			return nil, nil
		}
		return sharedKey(pub, recipients[i].Secret)
	})
}

// openWith decodes the envelope once and tries the keys key(0), key(1), …
// until one opens the box or key returns nil.
func openWith(nonceB64, ctB64 string, key func(int) (*[32]byte, error)) ([]byte, error) {
	nonceBytes, err := base64.StdEncoding.DecodeString(nonceB64)
	if err != nil || len(nonceBytes) != 24 {
		return nil, fmt.Errorf("%w: nonce is not 24 bytes of base64", ErrDecrypt)
	}
	ct, err := base64.StdEncoding.DecodeString(ctB64)
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext is not base64", ErrDecrypt)
	}
	var nonce [24]byte
	copy(nonce[:], nonceBytes)
	for i := 0; ; i++ {
		k, err := key(i)
		if err != nil {
			return nil, err
		}
		if k == nil {
			return nil, ErrDecrypt
		}
		if pt, ok := box.OpenAfterPrecomputation(nil, ct, &nonce, k); ok {
			if pt == nil {
				pt = []byte{}
			}
			return pt, nil
		}
	}
}

// EncodeBroadcast builds the body of a broadcast/group message (B.12): no
// encryption, ciphertext = standard base64 of the plaintext, plus a random
// 24-byte nonce as the legacy client and daemon send.
func EncodeBroadcast(plaintext []byte) (nonceB64, ciphertextB64 string) {
	return base64.StdEncoding.EncodeToString(randomNonce()[:]), base64.StdEncoding.EncodeToString(plaintext)
}

// DecodeBroadcast reverses EncodeBroadcast.
func DecodeBroadcast(ciphertextB64 string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(ciphertextB64)
	if err != nil {
		return nil, fmt.Errorf("%w: broadcast body is not base64", ErrDecrypt)
	}
	return b, nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
