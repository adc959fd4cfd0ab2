package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
)

// nodesCollector reports how many nodes are in each state at scrape time,
// counted from the inventory rather than kept up to date on every change.
type nodesCollector struct {
	inv  *inventory.Inventory
	desc *prometheus.Desc
}

func (c nodesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c nodesCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.inv.CountByState()
	for _, s := range inventory.States() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

// registerInventoryMetrics adds the node gauges, the state-duration
// histogram (time spent in a state, observed when a node leaves it) and
// the count of MACs the discovery limit turned away.
func registerInventoryMetrics(reg prometheus.Registerer, inv *inventory.Inventory) {
	reg.MustRegister(nodesCollector{inv: inv, desc: prometheus.NewDesc(
		"bootstrapd_nodes", "Nodes by lifecycle state.", []string{"state"}, nil)})
	spent := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "bootstrapd_state_duration_seconds",
		Help:    "Time nodes spent in a state, observed when they leave it, by state and the state they moved to.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200},
	}, []string{"state", "to"})
	reg.MustRegister(spent, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "bootstrapd_discovery_refused_total",
		Help: "New MACs not recorded as discovered nodes because the discovery limit was reached.",
	}, func() float64 { return float64(inv.DiscoveryRefused()) }))
	inv.OnMove = func(from, to inventory.State, d time.Duration) {
		spent.WithLabelValues(string(from), string(to)).Observe(d.Seconds())
	}
}
