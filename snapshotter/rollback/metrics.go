package rollback

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Metrics are the rollback controller's Prometheus metrics. A nil *Metrics
// records nothing.
type Metrics struct {
	rollbacks *prometheus.CounterVec
}

// NewMetrics creates the controller's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "snapgate_rollbacks_total",
		Help: "Rollbacks that ended, by outcome (Succeeded, Failed).",
	}, []string{"outcome"})}
	if err := reg.Register(m.rollbacks); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) observe(outcome policy.RollbackPhase) {
	if m != nil {
		m.rollbacks.WithLabelValues(string(outcome)).Inc()
	}
}
