package dispatch

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts deliveries. A nil *Metrics records nothing.
type Metrics struct {
	attempts *prometheus.HistogramVec
	outcomes *prometheus.CounterVec
}

// NewMetrics registers the dispatcher's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferry_delivery_attempt_duration_seconds",
			Help:    "Duration of HTTP delivery attempts, by result class.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"class"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_messages_finished_attempts_total",
			Help: "Recorded attempt outcomes: delivered, retry or failed (moved to the dead-letter queue).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.attempts, m.outcomes)
	return m
}

func (m *Metrics) observeAttempt(r *result, d time.Duration) {
	if m == nil {
		return
	}
	class := "error"
	switch {
	case r.err != nil:
		class = "no_response"
	case r.status < 300:
		class = "2xx"
	case r.status < 400:
		class = "3xx"
	case r.status < 500:
		class = "4xx"
	default:
		class = "5xx"
	}
	m.attempts.WithLabelValues(class).Observe(d.Seconds())
}

func (m *Metrics) delivered() {
	if m != nil {
		m.outcomes.WithLabelValues("delivered").Inc()
	}
}

func (m *Metrics) retried() {
	if m != nil {
		m.outcomes.WithLabelValues("retry").Inc()
	}
}

func (m *Metrics) failed() {
	if m != nil {
		m.outcomes.WithLabelValues("failed").Inc()
	}
}
