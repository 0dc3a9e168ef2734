package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRenderTable(t *testing.T) {
	rs := []result{
		{Step: "1 dm", Pass: true, Duration: 120 * time.Millisecond, Notes: "A→B 3ms"},
		{Step: "2 streams", Duration: 1500 * time.Millisecond, Notes: "no stream_data\nsecond line", Missing: "streams"},
		{Step: "5 rolling", Skipped: true, Notes: "not selected"},
	}
	var b strings.Builder
	renderTable(&b, rs)
	want := "" +
		"STEP       RESULT  DURATION  NOTES\n" +
		"1 dm       PASS    120ms     A→B 3ms\n" +
		"2 streams  FAIL    1.50s     [missing feature: streams] no stream_data; second line\n" +
		"5 rolling  SKIP    -         not selected\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	if !failed(rs) {
		t.Fatal("a FAIL row must fail the run")
	}
	if got := missingFeatures(rs); len(got) != 1 || got[0] != "streams (2 streams)" {
		t.Fatalf("missing features %v", got)
	}
	if failed([]result{rs[0], rs[2]}) {
		t.Fatal("PASS and SKIP rows must not fail the run")
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                        "0ms",
		999 * time.Millisecond:   "999ms",
		time.Second:              "1.00s",
		12345 * time.Millisecond: "12.35s",
	} {
		if got := fmtDur(d); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte("1\n2\n3\n4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := tail(p, 2); got != "3\n4" {
		t.Fatalf("%q", got)
	}
	if got := tail(p, 10); got != "1\n2\n3\n4" {
		t.Fatalf("%q", got)
	}
	if got := tail(p+"-missing", 3); got != "" {
		t.Fatalf("%q", got)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-short", "-steps", "1, 3"}, io.Discard)
	if err != nil || o.clients != 10 || o.phase != time.Second || len(o.steps) != 2 || o.steps[1] != 3 {
		t.Fatalf("%+v %v", o, err)
	}
	for _, bad := range [][]string{{"-clients", "5"}, {"-clients", "2"}, {"-steps", "6"}, {"-steps", "x"}, {"-rate", "0"}, {"extra"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
