// Package e2e holds snapgate's end-to-end tests and the local stack they run on
// (see stack/cluster.sh). The tests carry the build tag "e2e" and expect the stack
// to be up: `make e2e` starts it, then runs them.
package e2e
