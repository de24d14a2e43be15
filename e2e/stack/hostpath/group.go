package hostpath

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// A group snapshot copies every member under the locks of all of them and,
// where members are filesystems (FilesystemImage) mounted on this node, with
// all of them frozen at once, as a storage array's consistency group fences
// I/O: the copies are of one instant, whatever the application writes to
// them meanwhile. Members that are plain directories cannot be frozen; they
// are copied one after another.

// The freeze and thaw ioctls of linux/fs.h (_IOWR('X', 119, int) and
// _IOWR('X', 120, int)), which golang.org/x/sys/unix does not name; fsfreeze(8)
// issues the same.
const (
	fiFreeze = 0xc0045877
	fiThaw   = 0xc0045878
)

// groupRecord is what the driver remembers of a group snapshot; its members
// are ordinary snapshots (snapshotRecord) that name it.
type groupRecord struct {
	ID          string   `json:"id"`
	SnapshotIDs []string `json:"snapshotIDs"`
	// Frozen are the members whose filesystems were frozen for the cut.
	Frozen []string `json:"frozen,omitempty"`
}

func (d *Driver) groupMeta(id string) string { return filepath.Join(d.root, "groups", id+".json") }

// GroupControllerGetCapabilities implements csi.GroupControllerServer.
func (d *Driver) GroupControllerGetCapabilities(context.Context, *csi.GroupControllerGetCapabilitiesRequest) (*csi.GroupControllerGetCapabilitiesResponse, error) {
	return &csi.GroupControllerGetCapabilitiesResponse{Capabilities: []*csi.GroupControllerServiceCapability{{
		Type: &csi.GroupControllerServiceCapability_Rpc{Rpc: &csi.GroupControllerServiceCapability_RPC{
			Type: csi.GroupControllerServiceCapability_RPC_CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT,
		}},
	}}}, nil
}

// CreateVolumeGroupSnapshot implements csi.GroupControllerServer. The group's
// ID is the requested name and its members' IDs follow from it; a retried call
// returns the same group.
func (d *Driver) CreateVolumeGroupSnapshot(ctx context.Context, req *csi.CreateVolumeGroupSnapshotRequest) (*csi.CreateVolumeGroupSnapshotResponse, error) {
	id := req.GetName()
	if err := checkID("group snapshot name", id); err != nil {
		return nil, err
	}
	sources := slices.Clone(req.GetSourceVolumeIds())
	slices.Sort(sources)
	if len(sources) == 0 || len(slices.Compact(slices.Clone(sources))) != len(sources) {
		return nil, status.Errorf(codes.InvalidArgument, "group snapshot %s: source_volume_ids %v must name each volume once", id, req.GetSourceVolumeIds())
	}
	for _, s := range sources {
		if err := checkID("source volume ID", s); err != nil {
			return nil, err
		}
	}
	if msg, ok := req.GetParameters()[ParamFailWith]; ok {
		return nil, status.Error(codes.Internal, msg)
	}
	readyDelay, err := durationParam(req.GetParameters(), ParamReadyDelay)
	if err != nil {
		return nil, err
	}
	defer d.lock("group/" + id)()
	if g, err := d.group(id); err == nil {
		return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: g}, nil
	} else if status.Code(err) != codes.NotFound {
		return nil, err
	}
	// Every member's lock, in one order, so that two groups never deadlock.
	for _, s := range sources {
		defer d.lock("snapshot-of/" + s)()
	}
	thaw, frozen, err := d.freeze(sources)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "group snapshot %s: %v", id, err)
	}
	cut := d.now()
	ids := make([]string, len(sources))
	for i, src := range sources {
		ids[i] = fmt.Sprintf("%s-%d", id, i)
		if _, err := d.copySnapshot(ids[i], src, id, cut, readyDelay); err != nil {
			thaw()
			return nil, err
		}
	}
	thaw()
	if err := os.MkdirAll(filepath.Join(d.root, "groups"), 0o755); err != nil {
		return nil, status.Errorf(codes.Internal, "group snapshot %s: %v", id, err)
	}
	b, _ := json.Marshal(groupRecord{ID: id, SnapshotIDs: ids, Frozen: frozen})
	// The record is written last: a group without one does not exist.
	if err := os.WriteFile(d.groupMeta(id), b, 0o644); err != nil {
		return nil, status.Errorf(codes.Internal, "group snapshot %s: %v", id, err)
	}
	d.log.Info("Group snapshot cut", "group", id, "volumes", sources, "frozen", frozen)
	g, err := d.group(id)
	if err != nil {
		return nil, err
	}
	return &csi.CreateVolumeGroupSnapshotResponse{GroupSnapshot: g}, nil
}

// group reads a group snapshot and its members' state.
func (d *Driver) group(id string) (*csi.VolumeGroupSnapshot, error) {
	b, err := os.ReadFile(d.groupMeta(id))
	if os.IsNotExist(err) {
		return nil, status.Errorf(codes.NotFound, "group snapshot %s not found", id)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read group snapshot %s: %v", id, err)
	}
	var g groupRecord
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, status.Errorf(codes.Internal, "read group snapshot %s: %v", id, err)
	}
	now := d.now()
	out := &csi.VolumeGroupSnapshot{GroupSnapshotId: id, ReadyToUse: true}
	for _, sid := range g.SnapshotIDs {
		r, err := d.readSnapshot(sid)
		if err != nil {
			return nil, err
		}
		s := r.csi(now)
		s.GroupSnapshotId = id
		out.Snapshots = append(out.Snapshots, s)
		out.ReadyToUse = out.ReadyToUse && s.ReadyToUse
		out.CreationTime = timestamppb.New(r.CreatedAt)
	}
	return out, nil
}

// GetVolumeGroupSnapshot implements csi.GroupControllerServer.
func (d *Driver) GetVolumeGroupSnapshot(_ context.Context, req *csi.GetVolumeGroupSnapshotRequest) (*csi.GetVolumeGroupSnapshotResponse, error) {
	if err := checkID("group snapshot ID", req.GetGroupSnapshotId()); err != nil {
		return nil, err
	}
	g, err := d.group(req.GetGroupSnapshotId())
	if err != nil {
		return nil, err
	}
	return &csi.GetVolumeGroupSnapshotResponse{GroupSnapshot: g}, nil
}

// DeleteVolumeGroupSnapshot implements csi.GroupControllerServer: the group
// and every member go. Deleting one that is gone is done.
func (d *Driver) DeleteVolumeGroupSnapshot(ctx context.Context, req *csi.DeleteVolumeGroupSnapshotRequest) (*csi.DeleteVolumeGroupSnapshotResponse, error) {
	id := req.GetGroupSnapshotId()
	if err := checkID("group snapshot ID", id); err != nil {
		return nil, err
	}
	defer d.lock("group/" + id)()
	ids := req.GetSnapshotIds()
	if b, err := os.ReadFile(d.groupMeta(id)); err == nil {
		var g groupRecord
		if json.Unmarshal(b, &g) == nil {
			ids = append(ids, g.SnapshotIDs...)
		}
	}
	slices.Sort(ids)
	for _, sid := range slices.Compact(ids) {
		if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: sid}); err != nil {
			return nil, err
		}
	}
	if err := os.Remove(d.groupMeta(id)); err != nil && !os.IsNotExist(err) {
		return nil, status.Errorf(codes.Internal, "delete group snapshot %s: %v", id, err)
	}
	d.log.Info("Group snapshot deleted", "group", id)
	return &csi.DeleteVolumeGroupSnapshotResponse{}, nil
}

// freeze freezes the filesystem of every source that is a filesystem image
// mounted on this node (once per filesystem, however often it is mounted),
// and returns the thaw and the volumes it froze.
func (d *Driver) freeze(sources []string) (thaw func(), frozen []string, err error) {
	mounts, err := imageMounts()
	if err != nil {
		return nil, nil, err
	}
	var fds []int
	thaw = func() {
		for _, fd := range fds {
			if err := unix.IoctlSetInt(fd, fiThaw, 0); err != nil {
				d.log.Error(err, "Thawing a group snapshot's member")
			}
			unix.Close(fd)
		}
		fds = nil
	}
	for _, src := range sources {
		target, ok := mounts[filepath.Join(VolumeDir(d.root, src), FilesystemImage)]
		if !ok {
			continue
		}
		fd, err := unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			thaw()
			return nil, nil, fmt.Errorf("open %s to freeze volume %s: %w", target, src, err)
		}
		if err := unix.IoctlSetInt(fd, fiFreeze, 0); err != nil {
			unix.Close(fd)
			thaw()
			return nil, nil, fmt.Errorf("freeze volume %s at %s: %w", src, target, err)
		}
		fds, frozen = append(fds, fd), append(frozen, src)
	}
	return thaw, frozen, nil
}

// imageMounts maps each loop-mounted image file to a path that reaches one
// of its mount points from here. The node mounts volumes in a mount namespace
// of its own (the controller runs outside it), so every mount namespace is
// looked at once, through a process in it: /proc/PID/root/TARGET is the
// target as that process sees it.
func imageMounts() (map[string]string, error) {
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	out, seen := map[string]string{}, map[string]bool{}
	for _, proc := range procs {
		ns, err := os.Readlink(filepath.Join(proc, "ns", "mnt"))
		if err != nil || seen[ns] {
			continue // gone, or a namespace already read
		}
		seen[ns] = true
		f, err := os.Open(filepath.Join(proc, "mountinfo"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			image, target, ok := loopMount(sc.Text())
			if ok && out[image] == "" {
				out[image] = filepath.Join(proc, "root", target)
			}
		}
		f.Close()
	}
	return out, nil
}

// loopMount reads one mountinfo line: the image file behind a loop device
// mounted there, and the mount point.
func loopMount(line string) (image, target string, ok bool) {
	fields := strings.Fields(line)
	sep := slices.Index(fields, "-")
	if sep < 5 || len(fields) < sep+3 || !strings.HasPrefix(fields[sep+2], "/dev/loop") {
		return "", "", false
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(fields[sep+2]), "loop", "backing_file"))
	if err != nil {
		return "", "", false
	}
	return strings.TrimSpace(string(b)), unescapeMountPath(fields[4]), true
}
