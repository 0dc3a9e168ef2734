package client

import (
	"bytes"
	"fmt"

	"filippo.io/edwards25519"
)

// This file converts ed25519 public keys to X25519 the way libsodium's
// crypto_sign_ed25519_pk_to_curve25519 does (B.12), with
// filippo.io/edwards25519 (the standard library's edwards25519 is
// internal). It replaced a math/big version whose two scalar
// multiplications per key took ~0.8 ms: with a hundred peers a load run
// spent most of meshbench's CPU here (docs/benchmarks.md). Variable time
// would be fine: the inputs are public keys. Callers that convert the same
// key repeatedly still cache the shared key (see keyCache).

var (
	identity = edwards25519.NewIdentityPoint()
	// minusOne is L−1: [L−1]P + P = [L]P, the identity exactly when P is
	// in the prime-order subgroup (a Scalar is reduced mod L, so L itself
	// cannot be written).
	minusOne = new(edwards25519.Scalar).Subtract(edwards25519.NewScalar(), func() *edwards25519.Scalar {
		one, _ := new(edwards25519.Scalar).SetCanonicalBytes(append([]byte{1}, make([]byte, 31)...))
		return one
	}())
)

// PublicToCurve25519 is crypto_sign_ed25519_pk_to_curve25519 (B.12): the
// Montgomery u = (1+y)/(1−y) mod p of the Edwards point. Like libsodium it
// rejects encodings that are not on the curve, points of small order and
// points outside the prime-order subgroup; unlike libsodium it also
// rejects non-canonical encodings (no real client produces them).
func PublicToCurve25519(edPub []byte) ([]byte, error) {
	if len(edPub) != 32 {
		return nil, fmt.Errorf("%w: ed25519 pubkey is %d bytes", ErrInvalidKey, len(edPub))
	}
	p, err := new(edwards25519.Point).SetBytes(edPub)
	if err != nil {
		return nil, fmt.Errorf("%w: not on the curve", ErrInvalidKey)
	}
	if !bytes.Equal(p.Bytes(), edPub) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrInvalidKey)
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(identity) == 1 {
		return nil, fmt.Errorf("%w: small-order point", ErrInvalidKey)
	}
	lp := new(edwards25519.Point).ScalarMult(minusOne, p)
	if lp.Add(lp, p).Equal(identity) != 1 {
		return nil, fmt.Errorf("%w: point outside the prime-order subgroup", ErrInvalidKey)
	}
	return p.BytesMontgomery(), nil
}
