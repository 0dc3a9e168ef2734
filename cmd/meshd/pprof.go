package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/rs/zerolog"
)

// servePprof serves net/http/pprof on addr (PPROF_ADDR, docs/env-vars.md),
// a listener of its own so the profiles are never reachable through the
// broker's public port. Port 0 picks a free port; the address is logged
// ("pprof listening"). The block and mutex profiles are switched on with
// it: every wait of 1 ms or more is recorded (shorter ones sampled), so
// /debug/pprof/block shows where goroutines — a socket's read loop, a
// batch — wait. It returns a function that closes the listener.
func servePprof(addr string, log zerolog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("PPROF_ADDR: listen %s: %w", addr, err)
	}
	runtime.SetBlockProfileRate(int(time.Millisecond))
	runtime.SetMutexProfileFraction(100)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Msg("pprof listening")
	return func() { _ = hs.Close() }, nil
}
