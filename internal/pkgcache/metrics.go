package pkgcache

import "github.com/prometheus/client_golang/prometheus"

// Register exports the cache's counters to reg, read from Stats when
// scraped: nothing on the serving path changes for them.
func (c *Cache) Register(reg prometheus.Registerer) {
	for _, m := range []struct {
		name, help string
		get        func(Stats) int64
	}{
		{"hits_total", "Package cache requests answered without the upstream.", func(s Stats) int64 { return s.Hits }},
		{"misses_total", "Package cache requests that needed the upstream (a download or a revalidation).", func(s Stats) int64 { return s.Misses }},
		{"upstream_requests_total", "Requests the package cache sent to the upstream mirror.", func(s Stats) int64 { return s.UpstreamRequests }},
		{"upstream_bytes_total", "Bytes the package cache downloaded from the upstream mirror.", func(s Stats) int64 { return s.UpstreamBytes }},
		{"served_bytes_total", "Bytes the package cache served to nodes.", func(s Stats) int64 { return s.ServedBytes }},
		{"upstream_errors_total", "Failed or refused upstream requests (stale indexes served included).", func(s Stats) int64 { return s.UpstreamErrors }},
		{"evictions_total", "Files the package cache removed to stay within its size.", func(s Stats) int64 { return s.Evictions }},
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "bootstrapd", Subsystem: "package_cache", Name: m.name, Help: m.help},
			func() float64 { return float64(m.get(c.Stats())) }))
	}
}
