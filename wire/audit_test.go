package wire

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/meshd/meshd"
)

// TestAuditVectors are the two hash vectors of docs/protocol.md B.8.
func TestAuditVectors(t *testing.T) {
	t.Parallel()
	payload, err := CanonicalJSONBytes([]byte(`{"restored":false,"pubkey":"ab","groups":[{"name":"x"}],"role":"control-plane"}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"groups":[{"name":"x"}],"pubkey":"ab","restored":false,"role":"control-plane"}`; payload != want {
		t.Fatalf("canonical = %s, want %s", payload, want)
	}
	actor := "member1"
	at := time.Date(2026, 4, 15, 12, 0, 0, 0, time.UTC)
	in := AuditHashInput(Genesis, "mesh1", "peer_joined", &actor, payload, at)
	if want := `genesis|mesh1|peer_joined|member1|{"groups":[{"name":"x"}],"pubkey":"ab","restored":false,"role":"control-plane"}|2026-04-15T12:00:00.000Z`; in != want {
		t.Fatalf("input = %s, want %s", in, want)
	}
	if got, want := AuditHash(Genesis, "mesh1", "peer_joined", &actor, payload, at), "52328d848abe76c917cefb38483e05a22fba4a4749b0bc704b9f93f59d2be649"; got != want {
		t.Fatalf("hash = %s, want %s", got, want)
	}

	// Same payload built from Go values, as the broker does.
	goPayload, err := CanonicalJSON(map[string]any{"pubkey": "ab", "groups": []meshd.Group{{Name: "x"}}, "restored": false, "role": "control-plane"})
	if err != nil || goPayload != payload {
		t.Fatalf("from Go values: %s, %v", goPayload, err)
	}

	empty, _ := CanonicalJSON(map[string]any{})
	// A non-UTC time with sub-millisecond digits renders as the same instant.
	at2 := time.Date(2026, 4, 15, 14, 0, 0, 123_999_999, time.FixedZone("CEST", 2*3600))
	in = AuditHashInput(Genesis, "mesh1", "peer_left", nil, empty, at2)
	if want := `genesis|mesh1|peer_left|null|{}|2026-04-15T12:00:00.123Z`; in != want {
		t.Fatalf("input = %s, want %s", in, want)
	}
	if got, want := AuditHash(Genesis, "mesh1", "peer_left", nil, empty, at2), "8650177f69388200ad532ed487cd953ec2480ac19aa35a50b578449826de49a5"; got != want {
		t.Fatalf("hash = %s, want %s", got, want)
	}
}

func TestAuditLockKey(t *testing.T) {
	t.Parallel()
	for mesh, want := range map[string]int64{"mesh1": 870734828183836005, "abc": 6892370782728399470} {
		if got := AuditLockKey(mesh); got != want {
			t.Errorf("AuditLockKey(%q) = %d, want %d", mesh, got, want)
		}
	}
}

// TestAuditCanonicalHash is upstream's audit-canonical.test.ts.
func TestAuditCanonicalHash(t *testing.T) {
	t.Parallel()
	hash := func(payload string) string {
		c, err := CanonicalJSONBytes([]byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		return AuditHash(Genesis, "m", "e", nil, c, time.UnixMilli(0))
	}
	base := hash(`{"a":1,"b":{"c":2,"d":[1,2]}}`)
	if hash(`{"b":{"c":2,"d":[1,2]},"a":1}`) != base {
		t.Error("top-level key order changed the hash")
	}
	if hash(`{"a":1,"b":{"d":[1,2],"c":2}}`) != base {
		t.Error("nested key order changed the hash")
	}
	if hash(`{"a":1,"b":{"c":2,"d":[2,1]}}`) == base {
		t.Error("array order did not change the hash")
	}
	if hash(`{"a":1,"b":{"c":3,"d":[1,2]}}`) == base {
		t.Error("a changed value did not change the hash")
	}
}

// TestCanonicalJSON pins JS semantics where Go's encoding/json differs.
func TestCanonicalJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"html_unescaped", `{"a":"<>&"}`, `{"a":"<>&"}`},
		{"line_separators_unescaped", `"\u2028\u2029"`, "\"\u2028\u2029\""},
		{"short_escapes", `"\b\f\n\r\t\"\\\/"`, `"\b\f\n\r\t\"\\/"`},
		{"control_chars_lowercase", `"\u0000\u0001\u001F\u000b"`, `"\u0000\u0001\u001f\u000b"`},
		{"del_unescaped", `"\u007f"`, "\"\x7f\""},
		{"non_ascii_unescaped", `"\u00e9\ud83d\ude00"`, `"é😀"`},
		{"integer_float", `1.0`, `1`},
		{"exponent_large", `1e21`, `1e+21`},
		{"exponent_large_upper", `1E+21`, `1e+21`},
		{"below_exponent", `1e20`, `100000000000000000000`},
		{"decimal", `0.1`, `0.1`},
		{"small", `0.0000001`, `1e-7`},
		{"negative_zero", `-0`, `0`},
		{"long_integer", `123456789012345678901234567890`, `1.2345678901234568e+29`},
		{"overflow_is_null", `[1e400,-1e400]`, `[null,null]`},
		{"scalars", `[true,false,null,"",0]`, `[true,false,null,"",0]`},
		{"empty", `{"a":{},"b":[]}`, `{"a":{},"b":[]}`},
		{"whitespace_dropped", " { \"b\" : [ 1 , 2 ] , \"a\" : null } ", `{"a":null,"b":[1,2]}`},
		{"nested_key_order", `{"b":{"d":1,"c":2},"a":[3,{"f":1,"e":2}]}`, `{"a":[3,{"e":2,"f":1}],"b":{"c":2,"d":1}}`},
		{"key_order_ascii", `{"b":1,"a":2,"":3,"aa":4,"B":5}`, `{"":3,"B":5,"a":2,"aa":4,"b":1}`},
		{"key_order_utf16", `{"\uffff":1,"😀":2,"\ue000":3,"z":4}`, "{\"z\":4,\"😀\":2,\"\ue000\":3,\"\uffff\":1}"},
		{"key_order_same_high_surrogate", `{"😁":1,"😀":2}`, `{"😀":2,"😁":1}`},
		{"duplicate_key_last_wins", `{"a":1,"a":2}`, `{"a":2}`},
		{"escaped_key", `{"a\nb":1}`, `{"a\nb":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalJSONBytes([]byte(tt.in))
			if err != nil || got != tt.want {
				t.Fatalf("got %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestCanonicalJSONGoValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"nan_is_null", math.NaN(), `null`},
		{"float_exponent", 1e21, `1e+21`},
		{"lone_surrogate_wtf8", "\xed\xa0\x80x", `"\ud800x"`},
		{"invalid_utf8_replaced", "a\xffb", "\"a\ufffdb\""},
		{"raw_message", json.RawMessage(`{"b":1.50,"a":"<"}`), `{"a":"<","b":1.5}`},
		{"struct", struct {
			B int    `json:"b"`
			A string `json:"a"`
		}{1, "&"}, `{"a":"&","b":1}`},
		{"nested_any", map[string]any{"x": []any{json.Number("2.0"), "s", nil, true}}, `{"x":[2,"s",null,true]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalJSON(tt.v)
			if err != nil || got != tt.want {
				t.Fatalf("got %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestCanonicalJSONErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `{`, `1 2`, `{"a":1}}`, `nul`, "\"\x00\""} {
		if got, err := CanonicalJSONBytes([]byte(in)); err == nil {
			t.Errorf("CanonicalJSONBytes(%q) = %s, want an error", in, got)
		}
	}
	for _, v := range []any{json.Number("NaN"), json.Number("0x10"), json.Number(""), make(chan int), map[string]any{"a": []any{func() {}}}} {
		if got, err := CanonicalJSON(v); !errors.Is(err, ErrCanonicalJSON) {
			t.Errorf("CanonicalJSON(%T) = %s, %v; want ErrCanonicalJSON", v, got, err)
		}
	}
}

func TestFormatISOTime(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		t    time.Time
		want string
	}{
		{time.UnixMilli(0), "1970-01-01T00:00:00.000Z"},
		{time.Date(2026, 4, 15, 12, 0, 0, 999_999_999, time.UTC), "2026-04-15T12:00:00.999Z"},
		{time.UnixMilli(1717459200000), "2024-06-04T00:00:00.000Z"},
	} {
		if got := FormatISOTime(tt.t); got != tt.want {
			t.Errorf("FormatISOTime(%v) = %s, want %s", tt.t, got, tt.want)
		}
	}
}

// FuzzCanonicalJSON checks that canonical output is valid JSON and a fixed
// point: canonicalizing it again changes nothing.
func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{
		`{"restored":false,"pubkey":"ab","groups":[{"name":"x"}],"role":"control-plane"}`,
		`{"\uffff":1,"😀":[1.0,1e21,0.1,-0,"<>&\u2028"]}`,
		`"\u0000\b\ud800"`, `[1e400]`, `{}`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := CanonicalJSONBytes(data)
		if err != nil {
			return
		}
		if !json.Valid([]byte(out)) {
			t.Fatalf("canonical %q of %q is not JSON", out, data)
		}
		again, err := CanonicalJSONBytes([]byte(out))
		if err != nil || again != out {
			t.Fatalf("not a fixed point: %q -> %q (%v)", out, again, err)
		}
	})
}
