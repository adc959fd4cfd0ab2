package pxe

import (
	"strconv"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
)

// dhcpMetrics counts DHCP traffic. A nil *dhcpMetrics counts nothing, so
// tests can use a DHCP without a registry.
type dhcpMetrics struct {
	requests, replies *prometheus.CounterVec
	errors, dropped   prometheus.Counter
}

func newDHCPMetrics(reg prometheus.Registerer) *dhcpMetrics {
	m := &dhcpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootstrapd_dhcp_requests_total", Help: "DHCP requests received, by message type.",
		}, []string{"type"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootstrapd_dhcp_replies_total", Help: "DHCP replies sent, by message type.",
		}, []string{"type"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bootstrapd_dhcp_errors_total", Help: "DHCP requests that failed (store errors, send errors, bad requests).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bootstrapd_dhcp_dropped_total", Help: "DHCP requests dropped because too many were already in progress.",
		}),
	}
	reg.MustRegister(m.requests, m.replies, m.errors, m.dropped)
	return m
}

func (m *dhcpMetrics) request(t dhcpv4.MessageType) {
	if m != nil {
		m.requests.WithLabelValues(t.String()).Inc()
	}
}

func (m *dhcpMetrics) reply(t dhcpv4.MessageType) {
	if m != nil {
		m.replies.WithLabelValues(t.String()).Inc()
	}
}

func (m *dhcpMetrics) error() {
	if m != nil {
		m.errors.Inc()
	}
}

func (m *dhcpMetrics) drop() {
	if m != nil {
		m.dropped.Inc()
	}
}

// httpMetrics counts node-facing HTTP requests by route and status code.
type httpMetrics struct {
	requests *prometheus.CounterVec
	bytes    prometheus.Counter
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootstrapd_http_requests_total", Help: "Node HTTP requests, by route and status code.",
		}, []string{"route", "code"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bootstrapd_http_response_bytes_total", Help: "Bytes sent to nodes over HTTP (scripts and assets).",
		}),
	}
	reg.MustRegister(m.requests, m.bytes)
	return m
}

func (m *httpMetrics) observe(route string, code int, bytes int64) {
	if m != nil {
		m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		m.bytes.Add(float64(bytes))
	}
}
