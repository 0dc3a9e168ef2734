package wire

import (
	"encoding/json"
	"math"
	"strconv"
	"testing"
)

func TestFormatJSNumber(t *testing.T) {
	t.Parallel()
	tests := []struct {
		f    float64
		want string
	}{
		{0, "0"},
		{math.Copysign(0, -1), "0"},
		{1, "1"},
		{-1, "-1"},
		{1.5, "1.5"},
		{-1.5, "-1.5"},
		{0.1, "0.1"},
		{0.30000000000000004, "0.30000000000000004"}, // 0.1+0.2 in doubles
		{100, "100"},
		{1e20, "100000000000000000000"},
		{1e21, "1e+21"},
		{1.5e21, "1.5e+21"},
		{123456789012345680000, "123456789012345680000"},
		{0.000001, "0.000001"},
		{1e-7, "1e-7"},
		{1.5e-7, "1.5e-7"},
		{123e-20, "1.23e-18"},
		{5e-324, "5e-324"},
		{math.MaxFloat64, "1.7976931348623157e+308"},
		{1 << 53, "9007199254740992"},
		{1717459200000, "1717459200000"},
		{1717459200000.5, "1717459200000.5"},
		{math.NaN(), "NaN"},
		{math.Inf(1), "Infinity"},
		{math.Inf(-1), "-Infinity"},
	}
	for _, tt := range tests {
		if got := FormatJSNumber(tt.f); got != tt.want {
			t.Errorf("FormatJSNumber(%v) = %q, want %q", tt.f, got, tt.want)
		}
	}
}

func TestParseJSTimestamp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw    string
		want   float64
		wantOK bool
	}{
		{"", 0, false},
		{"null", 0, false},
		{`"1717459200000"`, 0, false},
		{"true", 0, false},
		{"{}", 0, false},
		{"[1]", 0, false},
		{"1e400", 0, false},
		{"-1e400", 0, false},
		{"NaN", 0, false},
		{"Infinity", 0, false},
		{"0x10", 0, false},
		{"01", 0, false},
		{"1 2", 0, false},
		{"1717459200000", 1717459200000, true},
		{" 1717459200000 ", 1717459200000, true},
		{"1.7174592e12", 1717459200000, true},
		{"-5", -5, true},
		{"1e-400", 0, true},
	}
	for _, tt := range tests {
		got, ok := ParseJSTimestamp(json.RawMessage(tt.raw))
		if ok != tt.wantOK || got != tt.want {
			t.Errorf("ParseJSTimestamp(%q) = %v, %v; want %v, %v", tt.raw, got, ok, tt.want, tt.wantOK)
		}
	}
}

// FuzzFormatJSNumber checks that every finite rendering is a JSON number
// that parses back to the same double.
func FuzzFormatJSNumber(f *testing.F) {
	for _, v := range []float64{0, 1, 0.1, 1e21, 1e-7, 5e-324, 123456789012345680000, 1717459200000} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		s := FormatJSNumber(v)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		if !json.Valid([]byte(s)) {
			t.Fatalf("FormatJSNumber(%v) = %q is not JSON", v, s)
		}
		back, err := strconv.ParseFloat(s, 64)
		if err != nil || back != v {
			t.Fatalf("FormatJSNumber(%v) = %q parses back as %v, %v", v, s, back, err)
		}
		if v == math.Trunc(v) && math.Abs(v) < 1e21 && (len(s) > 1 && s[len(s)-2:] == ".0") {
			t.Fatalf("integer %v rendered %q", v, s)
		}
	})
}
