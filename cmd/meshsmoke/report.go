package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one named step of the run.
type result struct {
	Step     string
	Pass     bool
	Skipped  bool
	Duration time.Duration
	Notes    string
	// Missing names a protocol feature the step needs that the broker does
	// not implement yet ("streams", "audit verify"); set only on failure.
	Missing string
}

func (r result) verdict() string {
	switch {
	case r.Skipped:
		return "SKIP"
	case r.Pass:
		return "PASS"
	default:
		return "FAIL"
	}
}

// failed reports whether any step failed (skipped steps do not count).
func failed(rs []result) bool {
	for _, r := range rs {
		if !r.Pass && !r.Skipped {
			return true
		}
	}
	return false
}

// fmtDur renders durations the way the table and the figures print them:
// milliseconds under a second, else seconds with two decimals.
func fmtDur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// renderTable writes the summary table: one row per step, notes last so
// long notes do not push the other columns around.
func renderTable(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tRESULT\tDURATION\tNOTES")
	for _, r := range rs {
		notes := strings.ReplaceAll(r.Notes, "\n", "; ")
		if r.Missing != "" && !r.Pass {
			notes = strings.TrimSpace("[missing feature: " + r.Missing + "] " + notes)
		}
		dur := "-"
		if !r.Skipped {
			dur = fmtDur(r.Duration)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Step, r.verdict(), dur, notes)
	}
	_ = tw.Flush()
}

// missingFeatures lists the features named by failed steps, in step order.
func missingFeatures(rs []result) []string {
	var out []string
	for _, r := range rs {
		if !r.Pass && !r.Skipped && r.Missing != "" {
			out = append(out, fmt.Sprintf("%s (%s)", r.Missing, r.Step))
		}
	}
	return out
}
