package hostpath

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newDriver(t *testing.T) (*Driver, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d, err := New(Options{Name: "hostpath.test", Root: t.TempDir(), Log: logr.Discard(), Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	return d, clock
}

func createVolume(t *testing.T, d *Driver, name string, src *csi.VolumeContentSource) string {
	t.Helper()
	resp, err := d.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: name, VolumeContentSource: src})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	return VolumeDir(d.root, resp.GetVolume().GetVolumeId())
}

func TestSnapshotRestoresFileContentsAndModes(t *testing.T) {
	d, _ := newDriver(t)
	dir := createVolume(t, d, "pvc-1", nil)
	if err := os.Mkdir(filepath.Join(dir, "pgdata"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pgdata", "table"), []byte("10000 rows"), 0o600); err != nil {
		t.Fatal(err)
	}
	snap, err := d.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: "pvc-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !snap.GetSnapshot().GetReadyToUse() || snap.GetSnapshot().GetSizeBytes() != 10 {
		t.Fatalf("snapshot = %v, want ready with 10 bytes", snap.GetSnapshot())
	}
	// Later writes to the volume must not reach the snapshot.
	if err := os.WriteFile(filepath.Join(dir, "pgdata", "table"), []byte("15000 rows"), 0o600); err != nil {
		t.Fatal(err)
	}

	restored := createVolume(t, d, "pvc-2", &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snapshot-1"},
	}})
	got, err := os.ReadFile(filepath.Join(restored, "pgdata", "table"))
	if err != nil || string(got) != "10000 rows" {
		t.Fatalf("restored file = %q, %v; want %q", got, err, "10000 rows")
	}
	info, err := os.Stat(filepath.Join(restored, "pgdata"))
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("restored pgdata mode = %v, %v; want 0700", info.Mode().Perm(), err)
	}
}

func TestCreateSnapshotIsIdempotentAndHonoursReadyDelay(t *testing.T) {
	d, clock := newDriver(t)
	createVolume(t, d, "pvc-1", nil)
	req := &csi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: "pvc-1", Parameters: map[string]string{ParamReadyDelay: "5s"}}

	first, err := d.CreateSnapshot(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if first.GetSnapshot().GetReadyToUse() || first.GetSnapshot().GetCreationTime() == nil {
		t.Fatalf("first = %v, want cut (creation time set) but not ready", first.GetSnapshot())
	}
	clock.t = clock.t.Add(5 * time.Second)
	again, err := d.CreateSnapshot(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !again.GetSnapshot().GetReadyToUse() || !again.GetSnapshot().GetCreationTime().AsTime().Equal(first.GetSnapshot().GetCreationTime().AsTime()) {
		t.Fatalf("again = %v, want the same snapshot, now ready", again.GetSnapshot())
	}

	_, err = d.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: "snapshot-1", SourceVolumeId: "pvc-other"})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("same name, other volume: err = %v, want AlreadyExists", err)
	}
}

func TestFaultsAndBadInput(t *testing.T) {
	d, _ := newDriver(t)
	createVolume(t, d, "pvc-1", nil)
	tests := map[string]struct {
		req  *csi.CreateSnapshotRequest
		code codes.Code
		msg  string
	}{
		"failWith fails with the configured message": {
			req:  &csi.CreateSnapshotRequest{Name: "s1", SourceVolumeId: "pvc-1", Parameters: map[string]string{ParamFailWith: "quota exceeded"}},
			code: codes.Internal, msg: "quota exceeded",
		},
		"a bad delay names the parameter": {
			req:  &csi.CreateSnapshotRequest{Name: "s2", SourceVolumeId: "pvc-1", Parameters: map[string]string{ParamReadyDelay: "soon"}},
			code: codes.InvalidArgument, msg: `parameter readyDelay="soon": want a non-negative duration such as 3s`,
		},
		"a missing source volume is NotFound": {
			req:  &csi.CreateSnapshotRequest{Name: "s3", SourceVolumeId: "pvc-gone"},
			code: codes.NotFound,
		},
		"a name that is not a path element is refused": {
			req:  &csi.CreateSnapshotRequest{Name: "../escape", SourceVolumeId: "pvc-1"},
			code: codes.InvalidArgument,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := d.CreateSnapshot(context.Background(), tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("err = %v, want code %v", err, tc.code)
			}
			if tc.msg != "" && status.Convert(err).Message() != tc.msg {
				t.Fatalf("message = %q, want %q", status.Convert(err).Message(), tc.msg)
			}
		})
	}
}

func TestRestoreFromUnreadySnapshotIsRefused(t *testing.T) {
	d, _ := newDriver(t)
	createVolume(t, d, "pvc-1", nil)
	if _, err := d.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: "s1", SourceVolumeId: "pvc-1", Parameters: map[string]string{ParamReadyDelay: "1h"}}); err != nil {
		t.Fatal(err)
	}
	_, err := d.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-2", VolumeContentSource: &csi.VolumeContentSource{
		Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "s1"}},
	}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	if _, statErr := os.Stat(VolumeDir(d.root, "pvc-2")); !os.IsNotExist(statErr) {
		t.Fatalf("a refused restore left a volume directory behind: %v", statErr)
	}
}

func TestListAndDeleteSnapshots(t *testing.T) {
	d, _ := newDriver(t)
	createVolume(t, d, "pvc-1", nil)
	createVolume(t, d, "pvc-2", nil)
	for _, s := range []struct{ name, vol string }{{"a", "pvc-1"}, {"b", "pvc-1"}, {"c", "pvc-2"}} {
		if _, err := d.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: s.name, SourceVolumeId: s.vol}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := d.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{SourceVolumeId: "pvc-1", MaxEntries: 1})
	if err != nil || len(page.GetEntries()) != 1 || page.GetNextToken() != "1" {
		t.Fatalf("first page = %v, %v; want one entry and token 1", page, err)
	}
	rest, err := d.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{SourceVolumeId: "pvc-1", StartingToken: page.GetNextToken()})
	if err != nil || len(rest.GetEntries()) != 1 || rest.GetEntries()[0].GetSnapshot().GetSnapshotId() != "b" {
		t.Fatalf("second page = %v, %v; want snapshot b", rest, err)
	}
	if _, err := d.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: "a"}); err != nil {
		t.Fatal(err)
	}
	one, err := d.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{SnapshotId: "a"})
	if err != nil || len(one.GetEntries()) != 0 {
		t.Fatalf("after delete = %v, %v; want none", one, err)
	}
}

// TestFilesystemVolumesAreImagesCopiedSparsely: a volume of a class that asks
// for ext4 is a filesystem image as large as the volume, and its snapshot
// copies only the image's data, not its holes.
func TestFilesystemVolumesAreImagesCopiedSparsely(t *testing.T) {
	if _, err := exec.LookPath(sbin("mkfs.ext4")); err != nil {
		t.Fatalf("mkfs.ext4 (e2fsprogs, make deps) is needed: %v", err)
	}
	d, _ := newDriver(t)
	ctx := context.Background()
	ext4 := []*csi.VolumeCapability{{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}}}}
	if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "fs", VolumeCapabilities: ext4,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 256 << 20}}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(VolumeDir(d.root, "fs"), FilesystemImage)
	info, err := os.Stat(img)
	if err != nil || info.Size() != 256<<20 {
		t.Fatalf("image %s: %v, size %v; want 256 MiB", img, err, info)
	}
	snap, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "fs-snap", SourceVolumeId: "fs"})
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.GetSnapshot().GetSizeBytes(); got <= 0 || got > 32<<20 {
		t.Fatalf("snapshot copied %d bytes of a fresh 256 MiB filesystem; want its data only", got)
	}
	copied, err := os.Stat(filepath.Join(d.snapshotDir("fs-snap"), FilesystemImage))
	if err != nil || copied.Size() != 256<<20 {
		t.Fatalf("the copy is %v, %v; want the image's full length", copied, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(d.snapshotDir("fs-snap"), FilesystemImage), &st); err != nil || st.Blocks*512 > 32<<20 {
		t.Fatalf("the copy takes %d bytes on disk; want its holes kept", st.Blocks*512)
	}
	if _, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "bad", VolumeCapabilities: []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "xfs"}}}}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("an xfs volume: %v; want InvalidArgument naming what is supported", err)
	}
}
