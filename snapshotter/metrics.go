package snapshotter

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	setsCreated *prometheus.CounterVec
	setsPruned  prometheus.Counter
	cut, ready  prometheus.Histogram
	frozen      prometheus.Histogram
	hookPhases  *prometheus.HistogramVec
	hooks       *prometheus.HistogramVec
	hookErrors  *prometheus.CounterVec
}

// NewMetrics creates the engine's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	buckets := []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 300}
	m := &Metrics{
		setsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snapgate_snapshot_sets_created_total",
			Help: "Snapshot sets created, by the change they were taken for.",
		}, []string{"reason"}),
		setsPruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "snapgate_snapshot_sets_pruned_total",
			Help: "Snapshot sets deleted by retention (snapgate.io/keep) or because their change was never admitted.",
		}),
		cut: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "snapgate_snapshot_set_cut_seconds", Buckets: buckets,
			Help: "Time from starting a set to every snapshot of it being cut, hooks included.",
		}),
		ready: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "snapgate_snapshot_set_ready_seconds", Buckets: buckets,
			Help: "Time from starting a set to every snapshot of it being ready to use.",
		}),
		frozen: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "snapgate_freeze_window_seconds", Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25},
			Help: "Time the pods of a set were quiesced, from the start of its pre-hooks to the end of its post-hooks, also when the set then failed (sets whose pods had hooks).",
		}),
		hookPhases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "snapgate_hook_phase_seconds", Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25},
			Help: "Time a set's pre-hooks or post-hooks took, run in its pods in parallel (the slowest pod's), by phase (pre, post).",
		}, []string{"phase"}),
		hooks: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "snapgate_hook_duration_seconds", Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25},
			Help: "Duration of hook commands, by phase (pre, post).",
		}, []string{"phase"}),
		hookErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snapgate_hook_failures_total",
			Help: "Hook commands that failed or timed out, by phase (pre, post).",
		}, []string{"phase"}),
	}
	for _, c := range []prometheus.Collector{m.setsCreated, m.setsPruned, m.cut, m.ready, m.frozen, m.hookPhases, m.hooks, m.hookErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) setTaken(reason string, prog Progress) {
	if m == nil || prog.CutAt == 0 {
		return // an existing set was only waited for
	}
	m.setsCreated.WithLabelValues(reason).Inc()
	m.cut.Observe(prog.CutAt.Seconds())
	if prog.ReadyAt > 0 {
		m.ready.Observe(prog.ReadyAt.Seconds())
	}
}

// observeHooks records how long a set's pods were quiesced, and how long its
// hook phases took: every time, whether or not the set was then taken, since the
// application waited anyway.
func (m *Metrics) observeHooks(h HookOutcome) {
	if m == nil || h.Frozen <= 0 {
		return
	}
	m.frozen.Observe(h.Frozen.Seconds())
	m.hookPhases.WithLabelValues("pre").Observe(h.PreHooks.Seconds())
	m.hookPhases.WithLabelValues("post").Observe(h.PostHooks.Seconds())
}

// ObservePruned counts a pruned set.
func (m *Metrics) ObservePruned() {
	if m != nil {
		m.setsPruned.Inc()
	}
}

// ObserveHook records one hook command's duration and outcome.
func (m *Metrics) ObserveHook(phase string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.hooks.WithLabelValues(phase).Observe(d.Seconds())
	if err != nil {
		m.hookErrors.WithLabelValues(phase).Inc()
	}
}
