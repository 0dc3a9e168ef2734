package client

import (
	"fmt"
	"math/big"
)

// This file converts ed25519 public keys to X25519 the way libsodium's
// crypto_sign_ed25519_pk_to_curve25519 does (B.12). The module has no
// exported edwards25519 package (filippo.io/edwards25519 is not in go.sum
// and the standard library's is internal), so the few point operations
// needed are done with math/big. They are variable-time, which is fine: the
// inputs are public keys. Callers that convert the same key repeatedly cache
// the result (see keyCache).

var (
	// fieldP is 2^255 - 19.
	fieldP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	// edD is the twisted Edwards curve constant -121665/121666 mod p.
	edD = func() *big.Int {
		inv := new(big.Int).ModInverse(big.NewInt(121666), fieldP)
		d := new(big.Int).Mul(big.NewInt(-121665), inv)
		return d.Mod(d, fieldP)
	}()
	edD2 = new(big.Int).Mod(new(big.Int).Lsh(edD, 1), fieldP)
	// groupL is the order of the prime-order subgroup, 2^252 + 2774…493.
	groupL, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	bigOne    = big.NewInt(1)
)

// edPoint is a point in extended coordinates (X:Y:Z:T), x = X/Z, y = Y/Z,
// xy = T/Z.
type edPoint struct{ x, y, z, t *big.Int }

func fmod(a *big.Int) *big.Int { return a.Mod(a, fieldP) }

func fmul(a, b *big.Int) *big.Int { return fmod(new(big.Int).Mul(a, b)) }

func fadd(a, b *big.Int) *big.Int { return fmod(new(big.Int).Add(a, b)) }

func fsub(a, b *big.Int) *big.Int { return fmod(new(big.Int).Sub(a, b)) }

// add is the complete addition law for a = -1 twisted Edwards curves
// (add-2008-hwcd-3); it also doubles.
func (p edPoint) add(q edPoint) edPoint {
	a := fmul(fsub(p.y, p.x), fsub(q.y, q.x))
	b := fmul(fadd(p.y, p.x), fadd(q.y, q.x))
	c := fmul(fmul(p.t, edD2), q.t)
	d := fmul(new(big.Int).Lsh(p.z, 1), q.z)
	e, f, g, h := fsub(b, a), fsub(d, c), fadd(d, c), fadd(b, a)
	return edPoint{x: fmul(e, f), y: fmul(g, h), z: fmul(f, g), t: fmul(e, h)}
}

// mul returns [k]p by double-and-add.
func (p edPoint) mul(k *big.Int) edPoint {
	r := edPoint{x: big.NewInt(0), y: big.NewInt(1), z: big.NewInt(1), t: big.NewInt(0)}
	for i := k.BitLen() - 1; i >= 0; i-- {
		r = r.add(r)
		if k.Bit(i) == 1 {
			r = r.add(p)
		}
	}
	return r
}

func (p edPoint) isIdentity() bool { return p.x.Sign() == 0 && p.y.Cmp(p.z) == 0 }

// decompress decodes a canonical point encoding (RFC 8032 §5.1.3) and
// returns its y coordinate and the point.
func decompress(enc []byte) (*big.Int, edPoint, error) {
	if len(enc) != 32 {
		return nil, edPoint{}, fmt.Errorf("%w: ed25519 pubkey is %d bytes", ErrInvalidKey, len(enc))
	}
	be := make([]byte, 32)
	for i := range enc {
		be[31-i] = enc[i]
	}
	sign := uint(be[0] >> 7)
	be[0] &= 0x7f
	y := new(big.Int).SetBytes(be)
	if y.Cmp(fieldP) >= 0 {
		// libsodium tolerates a few non-canonical encodings here; no real
		// client produces them, so meshd's SDK is stricter.
		return nil, edPoint{}, fmt.Errorf("%w: non-canonical y", ErrInvalidKey)
	}
	y2 := fmul(y, y)
	u := fsub(y2, bigOne)
	v := fadd(fmul(edD, y2), bigOne)
	x2 := fmul(u, new(big.Int).ModInverse(v, fieldP))
	x := new(big.Int).ModSqrt(x2, fieldP)
	if x == nil {
		return nil, edPoint{}, fmt.Errorf("%w: not on the curve", ErrInvalidKey)
	}
	if x.Sign() == 0 && sign == 1 {
		return nil, edPoint{}, fmt.Errorf("%w: negative zero x", ErrInvalidKey)
	}
	if x.Bit(0) != sign {
		x.Sub(fieldP, x)
	}
	return y, edPoint{x: x, y: new(big.Int).Set(y), z: big.NewInt(1), t: fmul(x, y)}, nil
}

// PublicToCurve25519 is crypto_sign_ed25519_pk_to_curve25519 (B.12): the
// Montgomery u = (1+y)/(1−y) mod p of the Edwards point. Like libsodium it
// rejects encodings that are not on the curve, points of small order and
// points outside the prime-order subgroup.
func PublicToCurve25519(edPub []byte) ([]byte, error) {
	y, p, err := decompress(edPub)
	if err != nil {
		return nil, err
	}
	if p.mul(big.NewInt(8)).isIdentity() {
		return nil, fmt.Errorf("%w: small-order point", ErrInvalidKey)
	}
	if !p.mul(groupL).isIdentity() {
		return nil, fmt.Errorf("%w: point outside the prime-order subgroup", ErrInvalidKey)
	}
	// y != 1 here: y = 1 means x = 0, the identity, rejected above.
	u := fmul(fadd(bigOne, y), new(big.Int).ModInverse(fsub(bigOne, y), fieldP))
	be := u.FillBytes(make([]byte, 32))
	out := make([]byte, 32)
	for i := range be {
		out[31-i] = be[i]
	}
	return out, nil
}
