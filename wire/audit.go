package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Genesis is the prev_hash of a mesh's first audit row (docs/protocol.md B.8).
const Genesis = "genesis"

// CanonicalJSON renders v as upstream's canonical_json (B.8) does in JS:
// object keys sorted by UTF-16 code units, no whitespace, strings escaped as
// JSON.stringify escapes them and numbers as JS prints them, so a payload
// read back from JSONB (where 1.0 may stay 1.0) hashes as it did when written.
//
// The JSON types are handled directly (nil, bool, string, json.Number,
// float64, []any, map[string]any: what a json.Decoder with UseNumber
// yields); any other value (a struct, []meshd.Group, json.RawMessage) goes
// through encoding/json first. Non-finite numbers render as null, as
// JSON.stringify renders them.
func CanonicalJSON(v any) (string, error) {
	var b strings.Builder
	if err := writeCanonical(&b, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

// CanonicalJSONBytes is CanonicalJSON of one JSON value, decoded with
// UseNumber so that numbers are re-rendered from their text.
func CanonicalJSONBytes(raw []byte) (string, error) {
	v, err := decodeJSON(raw)
	if err != nil {
		return "", err
	}
	return CanonicalJSON(v)
}

// AuditHashInput is the string an audit row's hash covers:
// <prev>|<mesh>|<event>|<actor or null>|<canonical payload>|<createdAt ISO>.
// createdAt renders as JS toISOString (UTC, milliseconds, "Z"); finer digits
// are truncated, so store created_at at millisecond precision or keep
// rendering it through this function.
func AuditHashInput(prev, meshID, eventType string, actor *string, canonicalPayload string, createdAt time.Time) string {
	a := "null"
	if actor != nil {
		a = *actor
	}
	return strings.Join([]string{prev, meshID, eventType, a, canonicalPayload, FormatISOTime(createdAt)}, "|")
}

// AuditHash is the lowercase hex SHA-256 of AuditHashInput.
func AuditHash(prev, meshID, eventType string, actor *string, canonicalPayload string, createdAt time.Time) string {
	sum := sha256.Sum256([]byte(AuditHashInput(prev, meshID, eventType, actor, canonicalPayload, createdAt)))
	return hex.EncodeToString(sum[:])
}

// AuditLockKey is the pg_advisory_xact_lock key that serializes audit writes
// of one mesh across replicas: the first 8 bytes of SHA-256("audit:"+meshID),
// big endian, with the sign bit cleared.
func AuditLockKey(meshID string) int64 {
	sum := sha256.Sum256([]byte("audit:" + meshID))
	return int64(binary.BigEndian.Uint64(sum[:8]) & 0x7fffffffffffffff)
}

// FormatISOTime renders t as JS Date.prototype.toISOString does for years
// 0–9999: UTC, exactly three fractional digits, "Z".
func FormatISOTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("canonical json: trailing data after the value")
	}
	return v, nil
}

func writeCanonical(b *strings.Builder, v any) error {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case string:
		writeJSString(b, v)
	case json.Number:
		f, ok := parseJSONNumber(string(v))
		if !ok {
			return fmt.Errorf("%w: number %q", ErrCanonicalJSON, string(v))
		}
		writeJSNumber(b, f)
	case float64:
		writeJSNumber(b, v)
	case []any:
		return writeArray(b, v)
	case map[string]any:
		return writeObject(b, v)
	default:
		return writeViaEncoding(b, v)
	}
	return nil
}

// parseJSONNumber parses JSON number syntax only (not "NaN", "0x1p4", ...).
// A number beyond the double range becomes ±Inf, as in JSON.parse.
func parseJSONNumber(s string) (float64, bool) {
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) || !json.Valid([]byte(s)) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	return f, true
}

func writeJSNumber(b *strings.Builder, f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		b.WriteString("null")
		return
	}
	b.WriteString(FormatJSNumber(f))
}

func writeArray(b *strings.Builder, a []any) error {
	b.WriteByte('[')
	for i, e := range a {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := writeCanonical(b, e); err != nil {
			return err
		}
	}
	b.WriteByte(']')
	return nil
}

func writeObject(b *strings.Builder, m map[string]any) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareUTF16)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSString(b, k)
		b.WriteByte(':')
		if err := writeCanonical(b, m[k]); err != nil {
			return err
		}
	}
	b.WriteByte('}')
	return nil
}

// writeViaEncoding canonicalizes a Go value that is not one of the decoded
// JSON types by marshalling it and decoding the result.
func writeViaEncoding(b *strings.Builder, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCanonicalJSON, err)
	}
	d, err := decodeJSON(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCanonicalJSON, err)
	}
	return writeCanonical(b, d)
}

// compareUTF16 orders strings as JS's default sort does: by UTF-16 code
// units. It differs from Go's byte (code point) order only when a character
// above U+FFFF (a surrogate pair, D800–DBFF first) meets one in
// U+E000–U+FFFF. Invalid UTF-8 compares as U+FFFD, as writeJSString emits it.
func compareUTF16(a, b string) int {
	for a != "" && b != "" {
		ra, na := decodeJSRune(a)
		rb, nb := decodeJSRune(b)
		if ra != rb {
			ua, ub := firstUTF16Unit(ra), firstUTF16Unit(rb)
			if ua != ub {
				return int(ua) - int(ub)
			}
			return int(ra) - int(rb) // same high surrogate: low ones follow code points
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) - len(b)
}

func firstUTF16Unit(r rune) rune {
	if r < 0x10000 {
		return r
	}
	return 0xd800 + (r-0x10000)>>10
}

// writeJSString writes s as JSON.stringify does (ES2019 well-formed
// stringify): short escapes for \b \f \n \r \t " \, \u00xx for the other
// control characters, everything else verbatim (including <, >, & and
// U+2028/U+2029, which encoding/json would escape). A surrogate code point
// stored WTF-8 style (ED A0–BF xx) is a JS lone surrogate and is written
// \udxxx; other invalid UTF-8 has no JS counterpart and becomes U+FFFD.
func writeJSString(b *strings.Builder, s string) {
	const hexDigits = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				b.WriteString(`\"`)
			case '\\':
				b.WriteString(`\\`)
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				if c < 0x20 {
					b.WriteString(`\u00`)
					b.WriteByte(hexDigits[c>>4])
					b.WriteByte(hexDigits[c&0xf])
				} else {
					b.WriteByte(c)
				}
			}
			i++
			continue
		}
		r, n := decodeJSRune(s[i:])
		switch {
		case 0xd800 <= r && r <= 0xdfff:
			b.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				b.WriteByte(hexDigits[(r>>shift)&0xf])
			}
		case r == utf8.RuneError && n == 1:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	b.WriteByte('"')
}

// decodeJSRune decodes the first character of s as writeJSString sees it:
// a WTF-8 surrogate is its code point, other invalid UTF-8 is U+FFFD.
func decodeJSRune(s string) (rune, int) {
	if isWTF8Surrogate(s) {
		return rune(s[0]&0x0f)<<12 | rune(s[1]&0x3f)<<6 | rune(s[2]&0x3f), 3
	}
	return utf8.DecodeRuneInString(s)
}

// isWTF8Surrogate reports whether s starts with the 3-byte encoding of a
// code point in D800–DFFF.
func isWTF8Surrogate(s string) bool {
	return len(s) >= 3 && s[0] == 0xed && s[1] >= 0xa0 && s[1] <= 0xbf && s[2] >= 0x80 && s[2] <= 0xbf
}
