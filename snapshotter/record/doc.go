// Package record writes the record of a snapshot set (snapgate.io/last-set,
// last-snapshots, last-reason) onto its StatefulSet when the change could not
// carry it itself: a scale through the scale subresource, whose Scale object
// has no annotations. It records only once the change is stored, so a change
// that never landed is never recorded.
package record
