// Package hostpath is a small CSI driver for the local test stack: volumes are
// directories, snapshots are copies of them.
//
// It serves the CSI Identity and Controller services over a unix socket for
// csi-provisioner and csi-snapshotter, and, as a second process in the real
// node's mount namespace, the Node service, which mounts a volume where kubelet
// asks (Node). A volume of a class with csi.storage.k8s.io/fstype: ext4 is a
// filesystem image instead of a plain directory (FilesystemImage).
//
// A VolumeSnapshotClass can stage faults through its parameters, so that tests
// exercise what real backends do: "readyDelay" keeps a cut snapshot
// readyToUse=false for a while (EBS uploads), "cutDelay" holds the cut itself, and
// "failWith" makes CreateSnapshot fail with that message.
//
// It is test infrastructure, never shipped: it keeps every byte on local disk and
// trusts its callers.
package hostpath
