package framework

import (
	"sync"
	"testing"
)

// parallel holds the names of the tests that called Parallel.
var parallel sync.Map

// Parallel runs t beside the other parallel tests, once every serial test has
// ended (go test runs those first). Most of an e2e test's time is waiting on
// its own pods and snapshots, so the tests that only use the shared snapgate
// run together. Call it first: what a test does before it runs serially.
//
// A test that stops, kills or replaces the shared snapgate, or counts exactly
// what it decides, must stay serial; the helpers that do so fail a test that
// called Parallel rather than pull snapgate from under the tests beside it.
func Parallel(t *testing.T) {
	t.Helper()
	parallel.Store(t.Name(), true)
	t.Parallel()
}

// serialOnly fails t if it runs in parallel; what names the helper.
func serialOnly(t testing.TB, what string) {
	t.Helper()
	if _, ok := parallel.Load(t.Name()); ok {
		t.Fatalf("%s in a test that called framework.Parallel: the tests running beside it need the shared snapgate as it is; leave this test serial", what)
	}
}
