package hostpath

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A group snapshot of two volumes: members that restore like any snapshot,
// the same group when retried, and all of it gone when deleted.
func TestGroupSnapshotIsMembersOfOneCutAndGoesWhole(t *testing.T) {
	d, _ := newDriver(t)
	ctx := context.Background()
	for _, v := range []string{"data", "wal"} {
		dir := createVolume(t, d, v, nil)
		if err := os.WriteFile(filepath.Join(dir, "log"), []byte(v+" 42\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	req := &csi.CreateVolumeGroupSnapshotRequest{Name: "group-1", SourceVolumeIds: []string{"wal", "data"}}
	resp, err := d.CreateVolumeGroupSnapshot(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	g := resp.GetGroupSnapshot()
	if g.GetGroupSnapshotId() != "group-1" || !g.GetReadyToUse() || len(g.GetSnapshots()) != 2 {
		t.Fatalf("group = %v", g)
	}
	for _, s := range g.GetSnapshots() {
		if s.GetGroupSnapshotId() != "group-1" || !s.GetCreationTime().AsTime().Equal(g.GetCreationTime().AsTime()) {
			t.Errorf("member %v: not of the group's one cut", s)
		}
	}
	again, err := d.CreateVolumeGroupSnapshot(ctx, req)
	if err != nil || again.GetGroupSnapshot().GetSnapshots()[1].GetSnapshotId() != g.GetSnapshots()[1].GetSnapshotId() {
		t.Fatalf("a retried create: %v, %v", again, err)
	}
	member := g.GetSnapshots()[1]
	restored := createVolume(t, d, "restored", &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: member.GetSnapshotId()}}})
	if b, err := os.ReadFile(filepath.Join(restored, "log")); err != nil || string(b) != member.GetSourceVolumeId()+" 42\n" {
		t.Fatalf("a member restores %q, %v; want its volume's %s", b, err, member.GetSourceVolumeId())
	}
	if _, err := d.DeleteVolumeGroupSnapshot(ctx, &csi.DeleteVolumeGroupSnapshotRequest{GroupSnapshotId: "group-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.GetVolumeGroupSnapshot(ctx, &csi.GetVolumeGroupSnapshotRequest{GroupSnapshotId: "group-1"}); status.Code(err) != codes.NotFound {
		t.Errorf("the group after delete: %v", err)
	}
	if _, err := d.readSnapshot(member.GetSnapshotId()); status.Code(err) != codes.NotFound {
		t.Errorf("a member after its group was deleted: %v", err)
	}
	if _, err := d.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "g", SourceVolumeIds: []string{"data", "data"}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a group naming a volume twice: %v", err)
	}
}

// Members that are mounted filesystems are frozen together for the cut, and
// thawed after it.
func TestGroupSnapshotFreezesMountedFilesystemsTogether(t *testing.T) {
	d, _ := newDriver(t)
	ctx := context.Background()
	ext4 := []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}}}}
	var targets []string
	for _, v := range []string{"data", "wal"} {
		if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: v, VolumeCapabilities: ext4, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}}); err != nil {
			t.Fatal(err)
		}
		target := t.TempDir()
		if err := mountFilesystem(filepath.Join(VolumeDir(d.root, v), FilesystemImage), target, false); err != nil {
			t.Fatalf("mount (the stack's tests run as root): %v", err)
		}
		t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
		targets = append(targets, target)
	}
	if _, err := d.CreateVolumeGroupSnapshot(ctx, &csi.CreateVolumeGroupSnapshotRequest{Name: "group-fs", SourceVolumeIds: []string{"data", "wal"}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(d.groupMeta("group-fs"))
	if err != nil {
		t.Fatal(err)
	}
	var g groupRecord
	if err := json.Unmarshal(b, &g); err != nil || !slices.Equal(g.Frozen, []string{"data", "wal"}) {
		t.Fatalf("frozen for the cut: %v (%v); want both", g.Frozen, err)
	}
	for _, target := range targets {
		if err := os.WriteFile(filepath.Join(target, "after"), []byte("thawed"), 0o600); err != nil {
			t.Errorf("a write after the cut to %s: %v", target, err)
		}
	}
}
