package collab

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/nacl/box"
)

// Per-topic keys, PROTOCOL-EXT E.2.6. A new topic gets a random 32-byte
// secretbox key; the creator's copy is sealed with crypto_box from a fresh
// X25519 sender keypair to the X25519 form of the creator's ed25519 member
// key. Stored blob = senderPublic (32) || box (32 + 16), standard padded
// base64 (108 chars); nonce = 24 random bytes, base64 (32 chars). The key
// and the sender secret are then forgotten: the broker can never read v2
// bodies.

// topicKeyBundle is what topic_create stores for a new topic.
type topicKeyBundle struct {
	senderPubHex string // topic.encrypted_key_pubkey
	encryptedKey string
	nonce        string
}

// sealTopicKey creates a topic key and seals it for memberPubkeyHex. ok is
// false when the member key is not a valid ed25519 point (then the topic is
// created unencrypted, as upstream).
func sealTopicKey(memberPubkeyHex string) (b topicKeyBundle, ok bool, err error) {
	recipient, err := ed25519PublicToX25519(memberPubkeyHex)
	if err != nil {
		return b, false, nil
	}
	var topicKey [32]byte
	var nonce [24]byte
	if _, err := rand.Read(topicKey[:]); err != nil {
		return b, false, fmt.Errorf("topic key: %w", err)
	}
	if _, err := rand.Read(nonce[:]); err != nil {
		return b, false, fmt.Errorf("topic key nonce: %w", err)
	}
	senderPub, senderPriv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return b, false, fmt.Errorf("topic key sender: %w", err)
	}
	blob := append(append(make([]byte, 0, 80), senderPub[:]...), box.Seal(nil, topicKey[:], &nonce, &recipient, senderPriv)...)
	clear(topicKey[:])
	clear(senderPriv[:])
	return topicKeyBundle{
		senderPubHex: hex.EncodeToString(senderPub[:]),
		encryptedKey: base64.StdEncoding.EncodeToString(blob),
		nonce:        base64.StdEncoding.EncodeToString(nonce[:]),
	}, true, nil
}

var (
	fieldP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	// edD is the twisted Edwards curve constant d = -121665/121666 mod p.
	edD = func() *big.Int {
		n := new(big.Int).Neg(big.NewInt(121665))
		d := new(big.Int).ModInverse(big.NewInt(121666), fieldP)
		return n.Mul(n, d).Mod(n, fieldP)
	}()
	errNotEd25519 = errors.New("not an ed25519 public key")
)

// ed25519PublicToX25519 is libsodium's crypto_sign_ed25519_pk_to_curve25519:
// u = (1 + y) / (1 - y) mod p, after checking that the 32 bytes encode a
// point of the curve (y < p and x² = (y² - 1) / (d·y² + 1) has a root).
func ed25519PublicToX25519(pubHex string) ([32]byte, error) {
	var out [32]byte
	raw, err := hex.DecodeString(pubHex)
	if err != nil || len(raw) != 32 {
		return out, errNotEd25519
	}
	le := make([]byte, 32)
	for i := range raw {
		le[31-i] = raw[i]
	}
	le[0] &= 0x7f // drop the sign bit of x
	y := new(big.Int).SetBytes(le)
	if y.Cmp(fieldP) >= 0 {
		return out, errNotEd25519
	}
	y2 := new(big.Int).Mul(y, y)
	y2.Mod(y2, fieldP)
	num := new(big.Int).Sub(y2, big.NewInt(1))
	den := new(big.Int).Mul(edD, y2)
	den.Add(den, big.NewInt(1)).Mod(den, fieldP)
	inv := new(big.Int).ModInverse(den, fieldP)
	if inv == nil {
		return out, errNotEd25519
	}
	x2 := num.Mul(num.Mod(num, fieldP), inv)
	x2.Mod(x2, fieldP)
	if x2.Sign() != 0 && big.Jacobi(x2, fieldP) != 1 {
		return out, errNotEd25519
	}
	oneMinus := new(big.Int).Sub(big.NewInt(1), y)
	oneMinus.Mod(oneMinus, fieldP)
	invOM := new(big.Int).ModInverse(oneMinus, fieldP)
	if invOM == nil { // y = 1: the identity, no Montgomery image
		return out, errNotEd25519
	}
	u := new(big.Int).Add(big.NewInt(1), y)
	u.Mul(u, invOM).Mod(u, fieldP)
	ub := u.FillBytes(make([]byte, 32))
	for i := range ub {
		out[31-i] = ub[i]
	}
	return out, nil
}
