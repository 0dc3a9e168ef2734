package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a run prints: a table on stdout, or this as JSON.
type Report struct {
	Mode      string            `json:"mode"`
	URLs      []string          `json:"urls"`
	Config    Config            `json:"-"`
	Params    string            `json:"params"`
	Wall      float64           `json:"wall_s"`
	Conns     int               `json:"connections"`
	DialFail  int               `json:"dial_failures"`
	HelloRate float64           `json:"hellos_per_s"`         // connect phase, all URLs
	HelloPer  float64           `json:"hellos_per_s_per_url"` // divided by the URL count
	Hello     Latency           `json:"hello_latency"`
	Delivery  *Delivery         `json:"delivery,omitempty"`
	E2E       Latency           `json:"e2e_latency"`
	AckLat    Latency           `json:"send_ack_latency"`
	PeakRSS   int64             `json:"peak_rss_bytes,omitempty"`
	Figures   map[string]string `json:"figures"`
	Problems  []string          `json:"problems"`
	Hostile   *HostileStats     `json:"hostile,omitempty"`
	Error     string            `json:"error,omitempty"`

	order []string
}

func (b *bench) report(runErr error) Report {
	b.mu.Lock()
	ds, figs, order, probs, hostile := b.dial, b.figures, b.order, b.problem, b.hostile
	b.mu.Unlock()
	r := Report{Mode: b.cfg.Mode, URLs: b.cfg.URLs, Config: b.cfg, Params: params(b.cfg), Wall: time.Since(b.start).Seconds(),
		Conns: ds.OK, DialFail: ds.Failed, HelloRate: ds.rate(), HelloPer: ds.rate() / float64(len(b.cfg.URLs)),
		E2E: b.led.e2e.summary(), AckLat: b.led.ack.summary(), PeakRSS: b.rss.peakBytes(),
		Figures: figs, Problems: probs, Hostile: hostile, order: order}
	if ds.Hello != nil {
		r.Hello = ds.Hello.summary()
	}
	if b.cfg.Mode == "burst" || b.cfg.Mode == "steady" {
		d := b.led.delivery()
		if f := b.getFleet(); f != nil {
			b.led.splitDuplicates(&d, f.epoch)
		}
		r.Delivery = &d
	}
	if runErr != nil {
		r.Error = runErr.Error()
	}
	if r.Problems == nil {
		r.Problems = []string{}
	}
	return r
}

// params is the workload in one line.
func params(c Config) string {
	switch c.Mode {
	case "burst":
		return fmt.Sprintf("%d peers × %d DMs, window %d, %d B", c.Peers, c.Msgs, c.Window, c.Payload)
	case "steady":
		return fmt.Sprintf("%.0f DMs/s for %s, %d peers, %d B", c.Rate, c.Duration, c.Peers, c.Payload)
	case "idle":
		return fmt.Sprintf("%d connections held %s", c.Conns, c.Hold)
	default:
		return fmt.Sprintf("%d connections, kill: %s", c.Conns, c.KillCmd)
	}
}

// save prints the report and writes cfg.JSONOut.
func (r Report) save(w io.Writer, cfg Config) error {
	if cfg.JSONOut != "" {
		f, err := os.Create(cfg.JSONOut)
		if err != nil {
			return err
		}
		err = errors.Join(r.write(f, true), f.Close())
		if err != nil {
			return err
		}
	}
	return r.write(w, cfg.JSON)
}

func (r Report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, row := range r.rows() {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

// rows is the table: the common figures, then the mode's, then verdict.
func (r Report) rows() [][2]string {
	rows := [][2]string{
		{"mode", r.Mode + ": " + r.Params},
		{"urls", strings.Join(r.URLs, " ")},
		{"wall", fmtDur(time.Duration(r.Wall * float64(time.Second)))},
		{"connections", fmt.Sprintf("%d (%d dial failures)", r.Conns, r.DialFail)},
		{"hellos/s", fmt.Sprintf("%.0f total, %.0f per URL (hello %s)", r.HelloRate, r.HelloPer, r.Hello)},
	}
	if d := r.Delivery; d != nil {
		rows = append(rows,
			[2]string{"delivered/expected", fmt.Sprintf("%d/%d acked (%d attempted)", d.Delivered, d.Acked, d.Attempted)},
			[2]string{"lost (acked, never pushed)", fmt.Sprint(d.Lost)},
			[2]string{"duplicates (by messageId)", fmt.Sprintf("%d (%d after the recipient's socket closed, %d unexplained)", d.Duplicates, d.Explained, d.Unexplained)},
			[2]string{"e2e latency", r.E2E.String()},
			[2]string{"send→ack latency", r.AckLat.String()})
		if len(d.SendErrors) > 0 {
			rows = append(rows, [2]string{"send errors", topKinds(d.SendErrors, 3)})
		}
	}
	for _, k := range r.order {
		rows = append(rows, [2]string{k, r.Figures[k]})
	}
	if r.PeakRSS > 0 {
		rows = append(rows, [2]string{"peak broker RSS", fmtBytes(r.PeakRSS)})
	}
	return append(rows, [2]string{"verdict", r.verdict()})
}

func (r Report) verdict() string {
	switch {
	case r.Error != "":
		return "ERROR: " + r.Error
	case len(r.Problems) > 0:
		return "FAIL: " + strings.Join(r.Problems, "; ")
	}
	return "ok"
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func fmtMS(v float64) string { return fmtDur(time.Duration(v * float64(time.Millisecond))) }

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/1024)
}
