package wire

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// FormatJSNumber renders f as ECMAScript Number::toString does (ECMA-262
// 6.1.6.1.20), which is what upstream puts into every signed or hashed string
// through template literals and JSON.stringify: the shortest digits that round
// trip, integers without ".0", decimal notation for 1e-7 < |f| < 1e21 and
// exponent form ("1e+21", "1e-7", "1.5e-7") outside it, and "0" for -0.
// NaN and the infinities render as "NaN", "Infinity" and "-Infinity".
func FormatJSNumber(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0" // covers -0
	case f < 0:
		return "-" + FormatJSNumber(-f)
	}
	// Go's shortest formatting picks the same digits as the spec (fewest
	// digits, then closest to f); only the layout differs.
	digits, exp := shortestDigits(f)
	k := len(digits)
	n := exp + 1 // f = 0.digits × 10^n
	var b strings.Builder
	switch {
	case k <= n && n <= 21:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", n-k))
	case 0 < n && n <= 21:
		b.WriteString(digits[:n])
		b.WriteByte('.')
		b.WriteString(digits[n:])
	case -6 < n && n <= 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -n))
		b.WriteString(digits)
	default:
		b.WriteByte(digits[0])
		if k > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		if n-1 >= 0 {
			b.WriteByte('+')
		}
		b.WriteString(strconv.Itoa(n - 1))
	}
	return b.String()
}

// shortestDigits returns the shortest round-trip decimal digits of a positive
// finite f (no leading or trailing zeros) and the exponent of the first one.
func shortestDigits(f float64) (string, int) {
	s := strconv.FormatFloat(f, 'e', -1, 64) // "d.ddde±xx"
	mant, expStr, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expStr) // cannot fail: FormatFloat output
	return strings.Replace(mant, ".", "", 1), exp
}

// ParseJSTimestamp reads a millisecond timestamp the way upstream's
// Number.isFinite check sees it: ok is false when raw is missing, null, a
// string or any other non-number, or a number too large to be finite as a
// double (JSON.parse turns 1e400 into Infinity).
func ParseJSTimestamp(raw json.RawMessage) (float64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	if !json.Valid(raw) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}
