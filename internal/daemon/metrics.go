package daemon

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bootstrapd/bootstrapd/internal/inventory"
	"github.com/bootstrapd/bootstrapd/internal/shares"
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

// registerSharedMetrics: whether the store takes writes, whether this
// instance leads, and its share of its segment's DHCP clients. With a
// store of its own an instance always leads and answers every client.
func registerSharedMetrics(reg prometheus.Registerer, db Store, leading *atomic.Bool, share *shares.Shares) {
	bit := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bootstrapd_store_up",
		Help: "1 while the store takes writes (etcd has a quorum), else 0.",
	}, func() float64 {
		h, ok := db.(interface{ Healthy() error })
		return bit(!ok || h.Healthy() == nil)
	}), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bootstrapd_leader",
		Help: "1 while this instance runs the router sync, the cluster watch, retire teardowns and deadlines.",
	}, func() float64 { return bit(leading.Load()) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bootstrapd_dhcp_share_buckets",
		Help: "Of the 256 buckets of its segment's clients (RFC 3074), how many this instance answers.",
	}, func() float64 {
		if share == nil {
			return 256
		}
		return float64(share.Count())
	}))
}
