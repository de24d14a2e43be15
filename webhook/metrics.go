package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Metrics are the guard's Prometheus metrics.
type Metrics struct {
	decisions *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

// NewMetrics creates the guard's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snapgate_admission_decisions_total",
			Help: "Admission decisions on guarded StatefulSets, by decision (allowed, denied) and change (template, scale-down, delete, none).",
		}, []string{"decision", "change"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "snapgate_admission_duration_seconds",
			Help:    "Time from receiving an admission request to answering it, by change.",
			Buckets: []float64{0.0005, 0.001, 0.005, 0.05, 0.25, 1, 2.5, 5, 10, 20, 30},
		}, []string{"change"}),
	}
	for _, c := range []prometheus.Collector{m.decisions, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) observe(resp admission.Response, reason policy.Reason, d time.Duration) {
	if m == nil {
		return
	}
	change := string(reason)
	if change == "" {
		change = "none"
	}
	decision := "allowed"
	if !resp.Allowed {
		decision = "denied"
	}
	m.decisions.WithLabelValues(decision, change).Inc()
	m.duration.WithLabelValues(change).Observe(d.Seconds())
}
