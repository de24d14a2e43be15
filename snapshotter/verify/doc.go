// Package verify proves that a snapshot set restores: it brings the set up as
// a scratch StatefulSet beside the live one (package restore), waits for its
// pods to be Ready, runs the preset's check or the StatefulSet's own in each,
// records the outcome on the set's snapshots, tells it as an Event, and
// deletes the scratch objects. An untested backup is no backup at all.
package verify
