package api

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the control plane's series of docs/protocol.md B.9.1 (upstream
// names, so dashboards and alerts are unchanged by the move out of broker/).
type metrics struct {
	legacyAuthHits  prometheus.Counter
	hookRequests    prometheus.Counter
	hookRateLimited prometheus.Counter
	// webhookRequests counts POST /hook/{meshId}/{secret} by outcome
	// (delivered, unauthorized, not_found, too_large, bad_body,
	// rate_limited); apiKeyRequests counts /api/v1 by outcome (ok,
	// unauthorized, forbidden).
	webhookRequests *prometheus.CounterVec
	apiKeyRequests  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		legacyAuthHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "broker_legacy_auth_hits_total", Help: "CLI requests accepted through the legacy body user_id shim."}),
		hookRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "broker_hook_requests_total", Help: "POST /hook/set-status requests."}),
		hookRateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "broker_hook_requests_rate_limited_total", Help: "Hook requests answered 429."}),
		webhookRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_webhook_requests_total", Help: "Inbound webhook requests by outcome."}, []string{"outcome"}),
		apiKeyRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_api_v1_requests_total", Help: "/api/v1 requests (API-key auth) by outcome."}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{m.legacyAuthHits, m.hookRequests, m.hookRateLimited, m.webhookRequests, m.apiKeyRequests} {
		if err := reg.Register(c); err != nil {
			return nil, errors.Join(errors.New("api: metrics"), err)
		}
	}
	return m, nil
}
