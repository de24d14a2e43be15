package snapshotter

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsCountCreatedSetsAndFailedHooks(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	m.setTaken("template", Progress{CutAt: time.Second, ReadyAt: 2 * time.Second})
	m.setTaken("template", Progress{}) // a retry that only waited for an existing set
	m.ObserveHook("pre", time.Second, nil)
	m.ObserveHook("pre", time.Second, errors.New("exit 1"))

	if got := testutil.ToFloat64(m.setsCreated.WithLabelValues("template")); got != 1 {
		t.Errorf("sets created = %v, want 1: a waited-for set was not created", got)
	}
	if got := testutil.CollectAndCount(m.ready); got != 1 {
		t.Errorf("ready histogram series = %d, want 1", got)
	}
	if got := testutil.ToFloat64(m.hookErrors.WithLabelValues("pre")); got != 1 {
		t.Errorf("pre-hook failures = %v, want 1", got)
	}
	var none *Metrics
	none.setTaken("template", Progress{CutAt: time.Second}) // a nil *Metrics records nothing, and does not panic
	none.ObserveHook("post", time.Second, nil)
}
