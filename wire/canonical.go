package wire

import (
	"crypto/ed25519"
	"encoding/hex"
)

// Prefixes of the session strings (docs/protocol.md B.3). They keep a signature
// made for one purpose from being replayed as another.
const (
	attestPrefix       = "claudemesh-session-attest"
	sessionHelloPrefix = "claudemesh-session-hello"
)

// HelloCanonical is the string a member signs in hello (B.2):
// <meshId>|<memberId>|<pubkey>|<timestamp>, the timestamp as JS renders it.
// Fields are used as sent, so an uppercase pubkey is signed uppercase.
func HelloCanonical(meshID, memberID, pubkey string, ts float64) string {
	return meshID + "|" + memberID + "|" + pubkey + "|" + FormatJSNumber(ts)
}

// AttestationCanonical is the string a parent member signs to vouch for a
// session key until expiresAt (ms epoch, B.3).
func AttestationCanonical(parentPub, sessionPub string, expiresAt float64) string {
	return attestPrefix + "|" + parentPub + "|" + sessionPub + "|" + FormatJSNumber(expiresAt)
}

// SessionHelloCanonical is the string the session key signs in session_hello
// (B.3); it proves possession of the session secret, which a captured
// attestation alone does not.
func SessionHelloCanonical(meshID, parentPub, sessionPub string, ts float64) string {
	return sessionHelloPrefix + "|" + meshID + "|" + parentPub + "|" + sessionPub + "|" + FormatJSNumber(ts)
}

// Sign returns the detached ed25519 signature of msg as 128 lowercase hex
// chars, byte-identical to libsodium's crypto_sign_detached (B.12).
func Sign(priv ed25519.PrivateKey, msg string) string {
	return hex.EncodeToString(ed25519.Sign(priv, []byte(msg)))
}

// VerifyHex reports whether sigHex is a valid signature of msg by pubHex.
// Hex of either case is accepted; wrong lengths or bad hex are false, never
// a panic. It follows libsodium's crypto_sign_verify_detached, which upstream
// uses, rather than Go's looser RFC 8032 check: a public key or signature R
// of small order, or a non-canonically encoded public key, is rejected (Go
// would accept e.g. the identity key with a crafted signature).
func VerifyHex(pubHex, sigHex, msg string) bool {
	if len(pubHex) != 2*ed25519.PublicKeySize || len(sigHex) != 2*ed25519.SignatureSize {
		return false
	}
	pub, err := hex.DecodeString(pubHex)
	if err != nil {
		return false
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil {
		return false
	}
	if hasSmallOrder(sig[:32]) || hasSmallOrder(pub) || !isCanonicalPoint(pub) {
		return false
	}
	return ed25519.Verify(pub, []byte(msg), sig)
}

// smallOrder lists the y-coordinates (little endian, sign bit cleared) of
// the points of order 1, 2, 4 and 8, including the non-canonical encodings
// y = p and y = p+1: libsodium's ge25519_has_small_order blocklist.
var smallOrder = [...][32]byte{
	{0x00}, // y = 0, order 4
	{0x01}, // y = 1, the identity
	{ // order 8
		0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
		0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
	},
	{ // order 8
		0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
		0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
	},
	fieldPrime(-1), // order 2
	fieldPrime(0),  // y = p ≡ 0
	fieldPrime(1),  // y = p+1 ≡ 1
}

// fieldPrime returns the little-endian encoding of 2^255 - 19 + d for
// d in {-1, 0, 1}.
func fieldPrime(d int) [32]byte {
	var b [32]byte
	for i := range b {
		b[i] = 0xff
	}
	b[0] = byte(0xed + d)
	b[31] = 0x7f
	return b
}

// hasSmallOrder reports whether the point encoding s is on the blocklist,
// ignoring the sign bit.
func hasSmallOrder(s []byte) bool {
	for _, bad := range smallOrder {
		if [31]byte(s[:31]) == [31]byte(bad[:31]) && s[31]&0x7f == bad[31] {
			return true
		}
	}
	return false
}

// isCanonicalPoint reports whether the y-coordinate encoded in s is below the
// field prime (libsodium's ge25519_is_canonical).
func isCanonicalPoint(s []byte) bool {
	if s[31]&0x7f != 0x7f || s[0] < 0xed {
		return true
	}
	for _, c := range s[1:31] {
		if c != 0xff {
			return true
		}
	}
	return false
}
