package api

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd/store"
)

// The legacy-auth drain (docs/operations.md "Retiring the legacy auth
// shim"): broker_legacy_auth_hits_total says how many requests still use
// body user_id, this says who. Each accepted legacy request is counted in
// memory per (user id, route); Run upserts the counts in one statement every
// LegacyAuthFlush (no commit per request) and refreshes
// broker_legacy_auth_users, the distinct users of the last 24 h (one series,
// whatever the number of users).

// LegacyAuthLog records who uses the legacy shim.
type LegacyAuthLog interface {
	// RecordLegacyAuthHits upserts per (user, route) first/last hit and count.
	RecordLegacyAuthHits(ctx context.Context, hits []store.LegacyAuthHits) error
	// LegacyAuthUsers counts the distinct users with a hit within window.
	LegacyAuthUsers(ctx context.Context, window time.Duration) (int64, error)
}

// legacyUsersWindow is the window of broker_legacy_auth_users.
const legacyUsersWindow = 24 * time.Hour

// legacyMaxKeys bounds the pending (user, route) pairs: one more flushes
// early instead of growing the map.
const legacyMaxKeys = 10000

type legacyKey struct{ user, route string }

type legacyRecorder struct {
	mu      sync.Mutex
	pending map[legacyKey]*store.LegacyAuthHits
	full    chan struct{} // kicked when pending reaches legacyMaxKeys
	users   prometheus.Gauge
}

func newLegacyRecorder() *legacyRecorder {
	return &legacyRecorder{
		pending: map[legacyKey]*store.LegacyAuthHits{},
		full:    make(chan struct{}, 1),
		users: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "broker_legacy_auth_users",
			Help: "Distinct users with a request accepted through the legacy body user_id shim in the last 24 h (database-wide).",
		}),
	}
}

// hit counts one accepted legacy request; it never blocks on I/O.
func (l *legacyRecorder) hit(user, route string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := legacyKey{user, route}
	if h := l.pending[k]; h != nil {
		h.Count++
		h.Last = now
		return
	}
	l.pending[k] = &store.LegacyAuthHits{UserID: user, Route: route, First: now, Last: now, Count: 1}
	if len(l.pending) >= legacyMaxKeys {
		select {
		case l.full <- struct{}{}:
		default:
		}
	}
}

// take empties the pending hits.
func (l *legacyRecorder) take() []store.LegacyAuthHits {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]store.LegacyAuthHits, 0, len(l.pending))
	for _, h := range l.pending {
		out = append(out, *h)
	}
	clear(l.pending)
	return out
}

// putBack returns hits a failed flush could not write, merged with newer.
func (l *legacyRecorder) putBack(hits []store.LegacyAuthHits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range hits {
		k := legacyKey{h.UserID, h.Route}
		p := l.pending[k]
		if p == nil {
			if len(l.pending) >= legacyMaxKeys {
				continue // bounded: the counter still counted them
			}
			c := h
			l.pending[k] = &c
			continue
		}
		p.Count += h.Count
		if h.First.Before(p.First) {
			p.First = h.First
		}
		if h.Last.After(p.Last) {
			p.Last = h.Last
		}
	}
}

// FlushLegacyAuth writes the pending legacy-auth hits now and refreshes
// broker_legacy_auth_users.
func (s *Server) FlushLegacyAuth(ctx context.Context) error {
	hits := s.legacy.take()
	if err := s.cfg.Store.RecordLegacyAuthHits(ctx, hits); err != nil {
		s.legacy.putBack(hits)
		return err
	}
	n, err := s.cfg.Store.LegacyAuthUsers(ctx, legacyUsersWindow)
	if err != nil {
		return err
	}
	s.legacy.users.Set(float64(n))
	return nil
}

// Run flushes the legacy-auth hits every LegacyAuthFlush until ctx ends,
// then once more.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.LegacyAuthFlush)
	defer t.Stop()
	flush := func(ctx context.Context) {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := s.FlushLegacyAuth(fctx); err != nil {
			s.log.Warn().Err(err).Msg("legacy auth use flush")
		}
	}
	for {
		flush(ctx)
		select {
		case <-ctx.Done():
			flush(context.WithoutCancel(ctx))
			return
		case <-t.C:
		case <-s.legacy.full:
		}
	}
}
