// Package hostpath is a small CSI driver for the local test stack: volumes are
// directories, snapshots are copies of them.
//
// It serves the CSI Identity and Controller services over a unix socket, which is
// all that csi-provisioner and csi-snapshotter need on a cluster whose nodes are
// kwok fakes (no kubelet mounts anything; pods reach their volume directory
// through exec, see package execbinder).
//
// A VolumeSnapshotClass can stage faults through its parameters, so that tests
// exercise what real backends do: "readyDelay" keeps a cut snapshot
// readyToUse=false for a while (EBS uploads), "cutDelay" holds the cut itself, and
// "failWith" makes CreateSnapshot fail with that message.
//
// It is test infrastructure, never shipped: it keeps every byte on local disk and
// trusts its callers.
package hostpath
