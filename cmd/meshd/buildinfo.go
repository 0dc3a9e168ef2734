package main

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// newBuildInfo is meshd_build_info{version,git_sha,go_version}, always 1:
// which build each replica runs (join it onto other series by instance, or
// count replicas per version during a rolling upgrade).
func newBuildInfo(version, gitSHA string) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "meshd_build_info",
		Help: "Always 1; the labels say which meshd build this replica runs.",
	}, []string{"version", "git_sha", "go_version"})
	g.WithLabelValues(version, gitSHA, runtime.Version()).Set(1)
	return g
}
