package wire

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// InvitePayload is a v1 signed invite (docs/protocol.md B.9.5): the JSON inside an
// invite token and the body field invite_payload of POST /join. Field order
// matches upstream's token JSON.
type InvitePayload struct {
	V           int    `json:"v"`
	MeshID      string `json:"mesh_id"`
	MeshSlug    string `json:"mesh_slug"`
	BrokerURL   string `json:"broker_url"`
	ExpiresAt   int64  `json:"expires_at"`    // unix seconds
	MeshRootKey string `json:"mesh_root_key"` // base64url, 32 bytes
	Role        string `json:"role"`          // "admin" | "member"
	OwnerPubkey string `json:"owner_pubkey"`  // 64 hex
	Signature   string `json:"signature"`     // 128 hex, over InviteCanonical
}

// InviteVersion is the only invite payload version meshd accepts.
const InviteVersion = 1

// maxInviteTokenLen bounds the token DecodeInviteToken will look at, so a
// pasted blob or a hostile body cannot make it allocate without limit; real
// tokens are about 600 characters.
const maxInviteTokenLen = 8 << 10

// inviteCodeAlphabet is upstream's short-code alphabet: no 0/O, 1/I.
const inviteCodeAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// InviteCanonical is the string the mesh owner signs:
// <v>|<mesh_id>|<mesh_slug>|<broker_url>|<expires_at>|<mesh_root_key>|<role>|<owner_pubkey>.
func InviteCanonical(p *InvitePayload) string {
	return strings.Join([]string{
		strconv.Itoa(p.V), p.MeshID, p.MeshSlug, p.BrokerURL,
		strconv.FormatInt(p.ExpiresAt, 10), p.MeshRootKey, p.Role, p.OwnerPubkey,
	}, "|")
}

// SignInvite sets p.OwnerPubkey to owner's public key and p.Signature to the
// owner's signature over InviteCanonical.
func SignInvite(p *InvitePayload, owner ed25519.PrivateKey) {
	p.OwnerPubkey = hex.EncodeToString(owner.Public().(ed25519.PublicKey))
	p.Signature = Sign(owner, InviteCanonical(p))
}

// VerifyInvite reports whether p.Signature is p.OwnerPubkey's signature over
// InviteCanonical. It does not check expiry, or that the owner key is the
// mesh's (the broker compares it with the stored owner key).
func VerifyInvite(p *InvitePayload) bool {
	return VerifyHex(p.OwnerPubkey, p.Signature, InviteCanonical(p))
}

// EncodeInviteToken returns the token form of p: base64url without padding
// of its JSON.
func EncodeInviteToken(p *InvitePayload) (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("encode invite: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// DecodeInviteToken parses a token made by EncodeInviteToken or upstream.
// Padding is tolerated. It checks structure only (a JSON object, v 1, a
// mesh id and broker URL); the caller checks VerifyInvite and expiry.
func DecodeInviteToken(tok string) (*InvitePayload, error) {
	if len(tok) > maxInviteTokenLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInviteToken, maxInviteTokenLen)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(tok, "="))
	if err != nil {
		return nil, fmt.Errorf("%w: base64url: %v", ErrInviteToken, err)
	}
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInviteToken)
	}
	var p InvitePayload
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: json: %v", ErrInviteToken, err)
	}
	switch {
	case p.V != InviteVersion:
		return nil, fmt.Errorf("%w: unsupported version %d", ErrInviteToken, p.V)
	case p.MeshID == "":
		return nil, fmt.Errorf("%w: missing mesh_id", ErrInviteToken)
	case p.BrokerURL == "":
		return nil, fmt.Errorf("%w: missing broker_url", ErrInviteToken)
	}
	return &p, nil
}

// ParseInviteLink accepts the link forms of B.9.5 and returns either the
// token (ic://join/<token>, http(s)://<host>/join/<token>,
// http(s)://<host>/<xx>/join/<token> with a 2-letter locale, or a bare
// token) or the short code (http(s)://<host>/i/<code>, which the caller
// resolves through the web app). Query and fragment are ignored.
func ParseInviteLink(s string) (token, code string, err error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		return checkInviteToken(s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrInviteLink, err)
	}
	seg := strings.Split(strings.Trim(u.Path, "/"), "/")
	switch {
	case u.Scheme == "ic" && u.Host == "join" && len(seg) == 1:
		return checkInviteToken(seg[0])
	case u.Scheme != "https" && u.Scheme != "http" || u.Host == "":
		return "", "", fmt.Errorf("%w: unsupported URL %q", ErrInviteLink, s)
	case len(seg) == 2 && seg[0] == "join":
		return checkInviteToken(seg[1])
	case len(seg) == 3 && isLocale(seg[0]) && seg[1] == "join":
		return checkInviteToken(seg[2])
	case len(seg) == 2 && seg[0] == "i":
		if !isAlnum(seg[1]) {
			return "", "", fmt.Errorf("%w: bad invite code %q", ErrInviteLink, seg[1])
		}
		return "", seg[1], nil
	}
	return "", "", fmt.Errorf("%w: no /join/<token> or /i/<code> in %q", ErrInviteLink, s)
}

// NewInviteCode returns a random 8-character short code from upstream's
// alphabet (32 symbols, so a byte modulo 32 is unbiased).
func NewInviteCode() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	for i := range b {
		b[i] = inviteCodeAlphabet[b[i]%byte(len(inviteCodeAlphabet))]
	}
	return string(b[:])
}

// checkInviteToken accepts a non-empty run of base64url characters with
// optional padding.
func checkInviteToken(tok string) (string, string, error) {
	body := strings.TrimRight(tok, "=")
	if body == "" || len(tok) > maxInviteTokenLen {
		return "", "", fmt.Errorf("%w: empty or oversized token", ErrInviteLink)
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !isAlnumByte(c) && c != '-' && c != '_' {
			return "", "", fmt.Errorf("%w: %q is not a base64url token", ErrInviteLink, tok)
		}
	}
	return tok, "", nil
}

func isLocale(s string) bool {
	return len(s) == 2 && isLetter(s[0]) && isLetter(s[1])
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isAlnumByte(c byte) bool { return isLetter(c) || '0' <= c && c <= '9' }

func isAlnum(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnumByte(s[i]) {
			return false
		}
	}
	return true
}
