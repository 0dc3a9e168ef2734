package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// rssSampler reads VmRSS of the broker PIDs from /proc and keeps the peak
// of their sum.
type rssSampler struct {
	pids []int

	mu   sync.Mutex
	peak int64 // guarded by mu; bytes
	last int64 // guarded by mu
}

func newRSSSampler(pids []int) *rssSampler { return &rssSampler{pids: pids} }

// check fails when a PID cannot be read (wrong PID, not Linux).
func (r *rssSampler) check() error {
	for _, pid := range r.pids {
		if _, err := readRSS(pid); err != nil {
			return fmt.Errorf("--pid %d: %w", pid, err)
		}
	}
	return nil
}

func (r *rssSampler) run(ctx context.Context, every time.Duration) {
	if len(r.pids) == 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		r.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample reads the sum now; dead PIDs (a killed replica) count as 0.
func (r *rssSampler) sample() int64 {
	var sum int64
	for _, pid := range r.pids {
		n, _ := readRSS(pid)
		sum += n
	}
	r.mu.Lock()
	r.last = sum
	r.peak = max(r.peak, sum)
	r.mu.Unlock()
	return sum
}

func (r *rssSampler) current() (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, len(r.pids) > 0
}

func (r *rssSampler) peakBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peak
}

// readRSS returns a process's resident set size in bytes (VmRSS).
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

func parseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "VmRSS:" {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS line")
}
