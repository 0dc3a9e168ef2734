// Package cron parses the 5-field cron expressions of scheduled messages
// (docs/protocol.md B.14.3) and finds their next occurrence in UTC (A.3-11). It
// owns no resource and does no I/O.
//
// Grammar: five whitespace-separated fields, minute (0-59), hour (0-23),
// day of month (1-31), month (1-12) and day of week (0-7, 0 and 7 are
// Sunday). Each field is a comma list of items; an item is `*`, `N` or
// `N-M`, optionally followed by `/step` (`N/step` means N to the field's
// maximum). Names (JAN, MON), macros (@daily) and `?`/`L`/`W` are rejected.
// A time matches when all five fields match: unlike Vixie cron there is no
// OR between day of month and day of week (upstream's rule).
package cron

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// MaxLookahead bounds Next: an expression with no occurrence within this
// long after the given time (e.g. `0 0 30 2 *`) has none at all.
const MaxLookahead = 366 * 24 * time.Hour

// maxExprLen bounds the input so a hostile expression cannot make Parse do
// unbounded work.
const maxExprLen = 1024

// ErrSyntax is wrapped by every Parse error.
var ErrSyntax = errors.New("cron: invalid expression")

// Schedule is a parsed expression: one bit set per field.
type Schedule struct {
	minute, hour, dom, month, dow uint64
}

type field struct {
	name     string
	min, max int // accepted values
	starMax  int // what `*` and `N/step` extend to (day of week: 6, not 7)
}

var fields = [5]field{
	{"minute", 0, 59, 59},
	{"hour", 0, 23, 23},
	{"day of month", 1, 31, 31},
	{"month", 1, 12, 12},
	{"day of week", 0, 7, 6},
}

// Parse parses a 5-field expression. Errors wrap ErrSyntax.
func Parse(expr string) (*Schedule, error) {
	if len(expr) > maxExprLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrSyntax, maxExprLen)
	}
	parts := strings.Fields(expr)
	if len(parts) != len(fields) {
		return nil, fmt.Errorf("%w: want 5 fields, got %d", ErrSyntax, len(parts))
	}
	var sets [5]uint64
	for i, f := range fields {
		set, err := f.parse(parts[i])
		if err != nil {
			return nil, fmt.Errorf("%w: %s field %q: %v", ErrSyntax, f.name, parts[i], err)
		}
		sets[i] = set
	}
	// Sunday is 0; 7 is accepted as an alias.
	if sets[4]&(1<<7) != 0 {
		sets[4] = sets[4]&^(1<<7) | 1
	}
	return &Schedule{minute: sets[0], hour: sets[1], dom: sets[2], month: sets[3], dow: sets[4]}, nil
}

func (f field) parse(s string) (uint64, error) {
	var set uint64
	for item := range strings.SplitSeq(s, ",") {
		bitsOf, err := f.item(item)
		if err != nil {
			return 0, err
		}
		set |= bitsOf
	}
	return set, nil
}

// item parses `*`, `N`, `N-M`, each with an optional `/step`.
func (f field) item(s string) (uint64, error) {
	rng, stepStr, hasStep := strings.Cut(s, "/")
	step := 1
	if hasStep {
		n, err := f.number(stepStr, 1, f.max-f.min+1)
		if err != nil {
			return 0, fmt.Errorf("step: %w", err)
		}
		step = n
	}
	var lo, hi int
	switch loStr, hiStr, isRange := strings.Cut(rng, "-"); {
	case rng == "*":
		lo, hi = f.min, f.starMax
	case isRange:
		var err error
		if lo, err = f.number(loStr, f.min, f.max); err != nil {
			return 0, err
		}
		if hi, err = f.number(hiStr, f.min, f.max); err != nil {
			return 0, err
		}
		if lo > hi {
			return 0, fmt.Errorf("range %d-%d is backwards", lo, hi)
		}
	default:
		n, err := f.number(rng, f.min, f.max)
		if err != nil {
			return 0, err
		}
		lo, hi = n, n
		if hasStep {
			hi = f.starMax
			if lo > hi {
				hi = lo
			}
		}
	}
	var set uint64
	for v := lo; v <= hi; v += step {
		set |= 1 << uint(v)
	}
	return set, nil
}

// number parses a decimal in [min, max]; only ASCII digits, no sign.
func (f field) number(s string, min, max int) (int, error) {
	if s == "" || len(s) > 3 {
		return 0, fmt.Errorf("bad number %q", s)
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("%q out of range %d-%d", s, min, max)
	}
	return n, nil
}

func has(set uint64, v int) bool { return set&(1<<uint(v)) != 0 }

// Matches reports whether the whole minute containing t (in UTC) matches
// all five fields.
func (s *Schedule) Matches(t time.Time) bool {
	t = t.UTC()
	return has(s.minute, t.Minute()) && has(s.hour, t.Hour()) && s.dayMatches(t)
}

func (s *Schedule) dayMatches(t time.Time) bool {
	return has(s.month, int(t.Month())) && has(s.dom, t.Day()) && has(s.dow, int(t.Weekday()))
}

// Next returns the first whole minute strictly after `after` (in UTC) that
// matches, and false when there is none within MaxLookahead.
func (s *Schedule) Next(after time.Time) (time.Time, bool) {
	after = after.UTC()
	t := after.Truncate(time.Minute).Add(time.Minute)
	limit := after.Add(MaxLookahead)
	for !t.After(limit) {
		switch {
		case !s.dayMatches(t):
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
		case !has(s.hour, t.Hour()):
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, time.UTC)
		case !has(s.minute, t.Minute()):
			t = t.Add(time.Duration(nextSet(s.minute, t.Minute())-t.Minute()) * time.Minute)
		default:
			return t, true
		}
	}
	return time.Time{}, false
}

// nextSet returns the smallest minute > v in set, or 60 (the next hour)
// when there is none.
func nextSet(set uint64, v int) int {
	rest := set >> uint(v+1) << uint(v+1)
	if rest&(1<<60-1) == 0 {
		return 60
	}
	return bits.TrailingZeros64(rest)
}
