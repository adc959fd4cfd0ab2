package pxe

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// quietLog is how the transports speak of traffic they do not answer
// (malformed packets, unknown clients, refused requests): anyone on the
// provisioning network can send as much of it as they like, so every such
// event is counted in bootstrapd_unanswered_total{proto,reason}, and at
// most burst lines per interval reach the log; the next line that does
// says how many were held back. A nil *quietLog counts and logs nothing.
type quietLog struct {
	log     *slog.Logger
	proto   string
	counter *prometheus.CounterVec // nil without a registry
	every   time.Duration
	burst   int

	mu         sync.Mutex
	windowFrom time.Time
	inWindow   int
	held       int
}

// Defaults for newQuietLog: ten lines a minute per transport keep a flood
// visible without letting it fill the disk.
const (
	quietEvery = time.Minute
	quietBurst = 10
)

func newQuietLog(log *slog.Logger, proto string, reg prometheus.Registerer) *quietLog {
	q := &quietLog{log: log, proto: proto, every: quietEvery, burst: quietBurst}
	if reg != nil {
		vec := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bootstrapd_unanswered_total",
			Help: "Packets and requests from the network that were not answered, by protocol and reason (their log lines are rate-limited).",
		}, []string{"proto", "reason"})
		// DHCP, TFTP and HTTP share one registry and one metric.
		if err := reg.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err)
			}
			vec = are.ExistingCollector.(*prometheus.CounterVec)
		}
		q.counter = vec
	}
	return q
}

// Warn counts one unanswered event for reason and logs msg with args
// unless this transport has logged burst lines in the current interval.
func (q *quietLog) Warn(reason, msg string, args ...any) {
	if q == nil {
		return
	}
	if q.counter != nil {
		q.counter.WithLabelValues(q.proto, reason).Inc()
	}
	if q.log == nil {
		return
	}
	q.mu.Lock()
	now := time.Now()
	if now.Sub(q.windowFrom) >= q.every {
		q.windowFrom, q.inWindow = now, 0
	}
	if q.inWindow >= q.burst {
		q.held++
		q.mu.Unlock()
		return
	}
	q.inWindow++
	held := q.held
	q.held = 0
	q.mu.Unlock()
	if held > 0 {
		args = append(args, "held_back", held)
	}
	q.log.Warn(msg, append(args, "reason", reason)...)
}
