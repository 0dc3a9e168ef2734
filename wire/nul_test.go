package wire

import "testing"

func TestHasNUL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		`{"a":"x\u0000y"}`:   true,
		`{"a":"\u0000"}`:     true,
		`{"a":"x\\u0000y"}`:  false, // literal backslash, then u0000
		`{"a":"x\\\u0000y"}`: true,
		`{"a":"\u00001"}`:    true,
		`{"a":"\u0001"}`:     false,
		`{"a":"\\"}`:         false,
		`{"a":"\u000`:        false,
		`\`:                  false,
	} {
		if got := HasNUL([]byte(in)); got != want {
			t.Errorf("HasNUL(%s) = %v, want %v", in, got, want)
		}
	}
}
