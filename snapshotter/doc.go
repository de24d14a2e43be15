// Package snapshotter is snapgate's engine, usable without a webhook: it plans a
// snapshot set for a change to a StatefulSet (which pods, which PVCs, which
// VolumeSnapshotClass), runs the quiesce hooks through a seam, creates the
// VolumeSnapshots in parallel, waits for them watch-driven, and records what it
// took as Events and labels.
//
// It never knows about AdmissionReview: the webhook package decides, this package
// acts. Reads of PVCs, PVs and classes go straight to the API server (they are
// few, and caching every PVC of a cluster would cost the webhook its memory
// budget); VolumeSnapshots are read from a cache of snapgate's own.
package snapshotter
