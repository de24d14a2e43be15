// Package prune keeps each StatefulSet's snapshot sets to snapgate.io/keep:
// the oldest ready sets beyond it go, and sooner the sets whose change was
// never admitted or whose snapshots failed. It never deletes the last recorded
// set, a set a rollback uses or is asked for, or a set of a StatefulSet that
// is gone: deleting a StatefulSet never deletes its data.
package prune
