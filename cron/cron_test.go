package cron

import (
	"errors"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Rejected expressions, named by why they are rejected.
func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, expr string }{
		{"empty", ""},
		{"four_fields", "* * * *"},
		{"six_fields", "0 * * * * *"},
		{"macro", "@daily"},
		{"month_name", "0 0 1 JAN *"},
		{"dow_name", "0 0 * * MON"},
		{"minute_60", "60 * * * *"},
		{"hour_24", "0 24 * * *"},
		{"dom_0", "0 0 0 * *"},
		{"dom_32", "0 0 32 * *"},
		{"month_13", "0 0 1 13 *"},
		{"dow_8", "0 0 * * 8"},
		{"negative", "-1 * * * *"},
		{"backwards_range", "30-10 * * * *"},
		{"open_range", "5- * * * *"},
		{"double_range", "1-2-3 * * * *"},
		{"step_zero", "*/0 * * * *"},
		{"step_empty", "*/ * * * *"},
		{"step_too_big", "*/61 * * * *"},
		{"empty_list_item", "1,,2 * * * *"},
		{"question_mark", "0 0 ? * *"},
		{"last_day", "0 0 L * *"},
		{"plus_sign", "+5 * * * *"},
		{"star_range", "*-5 * * * *"},
		{"huge_number", "99999999999999999999 * * * *"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := Parse(tt.expr); err == nil {
				t.Fatalf("Parse(%q) = %+v, want error", tt.expr, s)
			} else if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
		})
	}
}

func TestNext(t *testing.T) {
	t.Parallel()
	// 2025-01-01 is a Wednesday.
	tests := []struct {
		name, expr, after, want string
	}{
		{"every_minute", "* * * * *", "2025-01-01T10:00:00Z", "2025-01-01T10:01:00Z"},
		{"strictly_after_whole_minute", "* * * * *", "2025-01-01T10:00:59Z", "2025-01-01T10:01:00Z"},
		{"every_5_min", "*/5 * * * *", "2025-01-01T10:03:10Z", "2025-01-01T10:05:00Z"},
		{"list", "7,31 * * * *", "2025-01-01T10:08:00Z", "2025-01-01T10:31:00Z"},
		{"range_step", "10-30/10 * * * *", "2025-01-01T10:21:00Z", "2025-01-01T10:30:00Z"},
		{"n_step_runs_to_max", "50/5 * * * *", "2025-01-01T10:51:00Z", "2025-01-01T10:55:00Z"},
		{"hour_rollover", "0 9 * * *", "2025-01-01T10:00:00Z", "2025-01-02T09:00:00Z"},
		{"month_rollover", "0 0 1 * *", "2025-01-31T23:59:00Z", "2025-02-01T00:00:00Z"},
		{"year_rollover", "0 0 1 1 *", "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"},
		{"sunday_0", "0 12 * * 0", "2025-01-01T00:00:00Z", "2025-01-05T12:00:00Z"},
		{"sunday_7", "0 12 * * 7", "2025-01-01T00:00:00Z", "2025-01-05T12:00:00Z"},
		{"weekday_range", "0 8 * * 1-5", "2025-01-03T09:00:00Z", "2025-01-06T08:00:00Z"},
		// All five must match: the 13th that is a Friday (no Vixie OR).
		{"dom_and_dow", "0 0 13 * 5", "2025-01-01T00:00:00Z", "2025-06-13T00:00:00Z"},
		{"leap_day", "0 0 29 2 *", "2027-03-01T00:00:00Z", "2028-02-29T00:00:00Z"},
		{"input_in_other_zone", "0 12 * * *", "2025-01-01T11:30:00+01:00", "2025-01-01T12:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := s.Next(mustTime(t, tt.after))
			if !ok {
				t.Fatalf("Next: no occurrence")
			}
			if want := mustTime(t, tt.want); !got.Equal(want) || got.Location() != time.UTC {
				t.Fatalf("Next(%s) = %v, want %v UTC", tt.after, got, want)
			}
		})
	}
}

func TestNextNoneWithinLookahead(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{"0 0 30 2 *", "0 0 31 4 *", "0 0 29 2 *"} {
		s, err := Parse(expr)
		if err != nil {
			t.Fatal(err)
		}
		// From March 2025 the next Feb 29 is in 2028: beyond 366 days.
		if got, ok := s.Next(mustTime(t, "2025-03-01T00:00:00Z")); ok {
			t.Errorf("%q: Next = %v, want none", expr, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{"* * * * *", "*/5 * * * *", "0 9 * * 1-5", "0 0 13 * 5", "7,31 1-3/2 1 1,6 0,7",
		"0 0 29 2 *", "50/5 * * * *", "@daily", "1-2-3 * * * *", "*/0 * * * *"} {
		f.Add(seed, int64(1735725600))
	}
	f.Fuzz(func(t *testing.T, expr string, unix int64) {
		s, err := Parse(expr)
		if err != nil {
			return
		}
		after := time.Unix(unix%(1<<40), 0).UTC()
		next, ok := s.Next(after)
		if !ok {
			return
		}
		switch {
		case !next.After(after):
			t.Fatalf("%q: Next(%v) = %v, not after", expr, after, next)
		case next.Sub(after) > MaxLookahead+time.Minute:
			t.Fatalf("%q: Next(%v) = %v, beyond lookahead", expr, after, next)
		case next.Second() != 0 || next.Nanosecond() != 0:
			t.Fatalf("%q: Next = %v, not a whole minute", expr, next)
		case !s.Matches(next):
			t.Fatalf("%q: Next = %v does not match", expr, next)
		}
	})
}
