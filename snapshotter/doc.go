// Package snapshotter is snapgate's engine, usable without a webhook: it plans a
// snapshot set for a change to a StatefulSet (which pods, which PVCs, which
// VolumeSnapshotClass), runs the quiesce hooks through a seam, creates the
// VolumeSnapshots in parallel, waits for them watch-driven, and records what it
// took as Events and labels. It also takes sets on demand (PlanOnDemand), and
// reads a StatefulSet's sets back from their snapshots (ListSets); the keys
// and labels on snapshots are defined here, once.
//
// It never knows about AdmissionReview: the webhook package decides, this package
// acts. Reads of PVCs, PVs and classes go straight to the API server (they are
// few, and caching every PVC of a cluster would cost the webhook its memory
// budget); VolumeSnapshots are read from a cache of snapgate's own.
//
// Its controllers live one per package below it: record (the record of a set
// a scale could not carry), prune (retention), follow (sets followed to ready
// after admission), rollback (restores), and the hooks' Thawer in hooks; the
// annotations users set are parsed in policy, the built-in hooks are presets.
package snapshotter
