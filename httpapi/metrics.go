package httpapi

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts API activity. A nil *Metrics records nothing.
type Metrics struct {
	publishes *prometheus.CounterVec
	failures  *prometheus.CounterVec
}

// NewMetrics registers the API's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_messages_published_total",
			Help: "Messages accepted and stored.",
		}, nil),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_api_errors_total",
			Help: "API requests answered with an error, by error code.",
		}, []string{"code"}),
	}
	reg.MustRegister(m.publishes, m.failures)
	return m
}

func (m *Metrics) published() {
	if m != nil {
		m.publishes.WithLabelValues().Inc()
	}
}

func (m *Metrics) requestFailed(code string) {
	if m != nil {
		m.failures.WithLabelValues(code).Inc()
	}
}
