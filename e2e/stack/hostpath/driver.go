package hostpath

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Parameters of a VolumeSnapshotClass that stage faults.
const (
	// ParamReadyDelay keeps a snapshot readyToUse=false for this long after its cut
	// (a Go duration, e.g. "3s").
	ParamReadyDelay = "readyDelay"
	// ParamCutDelay holds the cut itself for this long before copying.
	ParamCutDelay = "cutDelay"
	// ParamFailWith makes CreateSnapshot fail with this message.
	ParamFailWith = "failWith"
)

const defaultCapacity = 1 << 30

// Driver is the hostpath CSI driver. Create it with New.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedGroupControllerServer

	name    string
	version string
	root    string
	log     logr.Logger
	now     func() time.Time

	// locks serialises calls for one volume or snapshot name, so that parallel
	// snapshots of different volumes run in parallel, as on a real backend.
	locks sync.Map
}

// Options configure a Driver.
type Options struct {
	// Name is the CSI driver name, as in a StorageClass's provisioner.
	Name string
	// Version is reported by GetPluginInfo.
	Version string
	// Root is the directory that holds volumes/ and snapshots/.
	Root string
	// Log receives one line per state change.
	Log logr.Logger
	// Now is the clock; defaults to time.Now (injected to make testing simpler).
	Now func() time.Time
}

// New returns a driver that keeps its state under opts.Root.
func New(opts Options) (*Driver, error) {
	if opts.Name == "" || opts.Root == "" {
		return nil, errors.New("hostpath: Name and Root are required")
	}
	if opts.Version == "" {
		opts.Version = "0.1.0"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for _, dir := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(opts.Root, dir), 0o755); err != nil {
			return nil, fmt.Errorf("hostpath: create state directory: %w", err)
		}
	}
	return &Driver{name: opts.Name, version: opts.Version, root: opts.Root, log: opts.Log, now: opts.Now}, nil
}

// VolumeDir is where the data of a volume lives.
func VolumeDir(root, volumeID string) string {
	return filepath.Join(root, "volumes", volumeID)
}

func (d *Driver) snapshotDir(id string) string { return filepath.Join(d.root, "snapshots", id) }
func (d *Driver) snapshotMeta(id string) string {
	return filepath.Join(d.root, "snapshots", id+".json")
}

func (d *Driver) lock(name string) func() {
	m, _ := d.locks.LoadOrStore(name, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// validID keeps names usable as single path elements.
var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,252}$`)

func checkID(kind, id string) error {
	if !validID.MatchString(id) {
		return status.Errorf(codes.InvalidArgument, "%s %q: must match %s", kind, id, validID)
	}
	return nil
}

// GetPluginInfo implements csi.IdentityServer.
func (d *Driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.name, VendorVersion: d.version}, nil
}

// GetPluginCapabilities implements csi.IdentityServer.
func (d *Driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	var caps []*csi.PluginCapability
	for _, t := range []csi.PluginCapability_Service_Type{csi.PluginCapability_Service_CONTROLLER_SERVICE, csi.PluginCapability_Service_GROUP_CONTROLLER_SERVICE} {
		caps = append(caps, &csi.PluginCapability{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: t}}})
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: caps}, nil
}

// Probe implements csi.IdentityServer.
func (d *Driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

// ControllerGetCapabilities implements csi.ControllerServer.
func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, c := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// ValidateVolumeCapabilities implements csi.ControllerServer: a directory serves
// every access mode.
func (d *Driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if _, err := os.Stat(VolumeDir(d.root, req.GetVolumeId())); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %s: %v", req.GetVolumeId(), err)
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeCapabilities: req.GetVolumeCapabilities(),
	}}, nil
}

// CreateVolume implements csi.ControllerServer. The volume ID is the requested
// name, so a retried call finds the volume it made before. A volume restored from
// a snapshot is filled in a temporary directory and renamed into place, so a crash
// never leaves a half-restored volume behind.
func (d *Driver) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	id := req.GetName()
	if err := checkID("volume name", id); err != nil {
		return nil, err
	}
	defer d.lock("volume/" + id)()

	capacity := req.GetCapacityRange().GetRequiredBytes()
	if capacity == 0 {
		capacity = defaultCapacity
	}
	dir := VolumeDir(d.root, id)
	resp := &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId:      id,
		CapacityBytes: capacity,
		ContentSource: req.GetVolumeContentSource(),
	}}
	if _, err := os.Stat(dir); err == nil {
		return resp, nil
	}

	src := req.GetVolumeContentSource()
	if src == nil {
		if err := os.Mkdir(dir, 0o777); err != nil {
			return nil, status.Errorf(codes.Internal, "create volume %s: %v", id, err)
		}
		// Mkdir is subject to the umask; pods of any user write into their volume.
		if err := os.Chmod(dir, 0o777); err != nil {
			return nil, status.Errorf(codes.Internal, "create volume %s: %v", id, err)
		}
		fsType, err := requestedFSType(req.GetVolumeCapabilities())
		if err == nil && fsType != "" {
			err = makeFilesystem(filepath.Join(dir, FilesystemImage), capacity)
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		d.log.Info("Volume created", "volume", id, "capacity", capacity, "fsType", fsType)
		return resp, nil
	}
	snap := src.GetSnapshot()
	if snap == nil {
		return nil, status.Error(codes.InvalidArgument, "only snapshots are supported as a volume content source")
	}
	meta, err := d.readSnapshot(snap.GetSnapshotId())
	if err != nil {
		return nil, err
	}
	if !meta.ready(d.now()) {
		return nil, status.Errorf(codes.Unavailable, "snapshot %s is not ready to use yet", snap.GetSnapshotId())
	}
	tmp, err := os.MkdirTemp(filepath.Join(d.root, "volumes"), "."+id+"-")
	if err != nil {
		return nil, status.Errorf(codes.Internal, "restore volume %s: %v", id, err)
	}
	defer os.RemoveAll(tmp)
	data := filepath.Join(tmp, "data")
	if _, err := copyTree(d.snapshotDir(snap.GetSnapshotId()), data); err != nil {
		return nil, status.Errorf(codes.Internal, "restore volume %s: %v", id, err)
	}
	if err := os.Rename(data, dir); err != nil {
		return nil, status.Errorf(codes.Internal, "restore volume %s: %v", id, err)
	}
	if capacity < meta.SizeBytes {
		resp.Volume.CapacityBytes = meta.SizeBytes
	}
	d.log.Info("Volume restored", "volume", id, "snapshot", snap.GetSnapshotId())
	return resp, nil
}

// DeleteVolume implements csi.ControllerServer.
func (d *Driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if err := checkID("volume ID", id); err != nil {
		return nil, err
	}
	defer d.lock("volume/" + id)()
	if err := os.RemoveAll(VolumeDir(d.root, id)); err != nil {
		return nil, status.Errorf(codes.Internal, "delete volume %s: %v", id, err)
	}
	d.log.Info("Volume deleted", "volume", id)
	return &csi.DeleteVolumeResponse{}, nil
}

// snapshotRecord is what the driver remembers of a snapshot, beside its copy.
type snapshotRecord struct {
	ID             string    `json:"id"`
	SourceVolumeID string    `json:"sourceVolumeID"`
	CreatedAt      time.Time `json:"createdAt"`
	ReadyAt        time.Time `json:"readyAt"`
	SizeBytes      int64     `json:"sizeBytes"`
	// GroupID is the group snapshot the snapshot is a member of, if any.
	GroupID string `json:"groupID,omitempty"`
}

func (r *snapshotRecord) ready(now time.Time) bool { return !now.Before(r.ReadyAt) }

func (r *snapshotRecord) csi(now time.Time) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:      r.ID,
		SourceVolumeId:  r.SourceVolumeID,
		CreationTime:    timestamppb.New(r.CreatedAt),
		SizeBytes:       r.SizeBytes,
		ReadyToUse:      r.ready(now),
		GroupSnapshotId: r.GroupID,
	}
}

func (d *Driver) readSnapshot(id string) (*snapshotRecord, error) {
	if err := checkID("snapshot ID", id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(d.snapshotMeta(id))
	if os.IsNotExist(err) {
		return nil, status.Errorf(codes.NotFound, "snapshot %s not found", id)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read snapshot %s: %v", id, err)
	}
	var r snapshotRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, status.Errorf(codes.Internal, "read snapshot %s: %v", id, err)
	}
	return &r, nil
}

func durationParam(params map[string]string, key string) (time.Duration, error) {
	v, ok := params[key]
	if !ok {
		return 0, nil
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < 0 {
		return 0, status.Errorf(codes.InvalidArgument, "parameter %s=%q: want a non-negative duration such as 3s", key, v)
	}
	return dur, nil
}

// CreateSnapshot implements csi.ControllerServer. The snapshot ID is the requested
// name; a retried call returns the same snapshot, readyToUse once its readyDelay
// has passed.
func (d *Driver) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	id, source := req.GetName(), req.GetSourceVolumeId()
	if err := checkID("snapshot name", id); err != nil {
		return nil, err
	}
	if err := checkID("source volume ID", source); err != nil {
		return nil, err
	}
	params := req.GetParameters()
	if msg, ok := params[ParamFailWith]; ok {
		d.log.Info("Snapshot failed as configured", "snapshot", id, "message", msg)
		return nil, status.Error(codes.Internal, msg)
	}
	readyDelay, err := durationParam(params, ParamReadyDelay)
	if err != nil {
		return nil, err
	}
	cutDelay, err := durationParam(params, ParamCutDelay)
	if err != nil {
		return nil, err
	}
	defer d.lock("snapshot/" + id)()

	if r, err := d.readSnapshot(id); err == nil {
		if r.SourceVolumeID != source {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists for volume %s, not %s", id, r.SourceVolumeID, source)
		}
		return &csi.CreateSnapshotResponse{Snapshot: r.csi(d.now())}, nil
	} else if status.Code(err) != codes.NotFound {
		return nil, err
	}

	if _, err := os.Stat(VolumeDir(d.root, source)); err != nil {
		return nil, status.Errorf(codes.NotFound, "source volume %s: %v", source, err)
	}
	if cutDelay > 0 {
		select {
		case <-time.After(cutDelay):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	defer d.lock("snapshot-of/" + source)()
	r, err := d.copySnapshot(id, source, "", d.now(), readyDelay)
	if err != nil {
		return nil, err
	}
	return &csi.CreateSnapshotResponse{Snapshot: r.csi(d.now())}, nil
}

// copySnapshot copies volume source as snapshot id (a member of group, when
// one is named), cut at cut.
func (d *Driver) copySnapshot(id, source, group string, cut time.Time, readyDelay time.Duration) (*snapshotRecord, error) {
	tmp, err := os.MkdirTemp(filepath.Join(d.root, "snapshots"), "."+id+"-")
	if err != nil {
		return nil, status.Errorf(codes.Internal, "snapshot %s: %v", id, err)
	}
	defer os.RemoveAll(tmp)
	size, err := copyTree(VolumeDir(d.root, source), filepath.Join(tmp, "data"))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "snapshot %s: %v", id, err)
	}
	if err := os.Rename(filepath.Join(tmp, "data"), d.snapshotDir(id)); err != nil {
		return nil, status.Errorf(codes.Internal, "snapshot %s: %v", id, err)
	}
	r := &snapshotRecord{ID: id, SourceVolumeID: source, GroupID: group, CreatedAt: cut, ReadyAt: cut.Add(readyDelay), SizeBytes: size}
	b, _ := json.Marshal(r)
	// The record is written last: a snapshot without one does not exist.
	if err := os.WriteFile(d.snapshotMeta(id), b, 0o644); err != nil {
		return nil, status.Errorf(codes.Internal, "snapshot %s: %v", id, err)
	}
	d.log.Info("Snapshot cut", "snapshot", id, "volume", source, "group", group, "bytes", size, "readyAt", r.ReadyAt)
	return r, nil
}

// DeleteSnapshot implements csi.ControllerServer.
func (d *Driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if err := checkID("snapshot ID", id); err != nil {
		return nil, err
	}
	defer d.lock("snapshot/" + id)()
	if err := os.Remove(d.snapshotMeta(id)); err != nil && !os.IsNotExist(err) {
		return nil, status.Errorf(codes.Internal, "delete snapshot %s: %v", id, err)
	}
	if err := os.RemoveAll(d.snapshotDir(id)); err != nil {
		return nil, status.Errorf(codes.Internal, "delete snapshot %s: %v", id, err)
	}
	d.log.Info("Snapshot deleted", "snapshot", id)
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots implements csi.ControllerServer, filtered by snapshot or source
// volume, paged by a numeric starting token.
func (d *Driver) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	now := d.now()
	if id := req.GetSnapshotId(); id != "" {
		r, err := d.readSnapshot(id)
		if status.Code(err) == codes.NotFound || status.Code(err) == codes.InvalidArgument {
			return &csi.ListSnapshotsResponse{}, nil
		}
		if err != nil {
			return nil, err
		}
		return &csi.ListSnapshotsResponse{Entries: []*csi.ListSnapshotsResponse_Entry{{Snapshot: r.csi(now)}}}, nil
	}
	metas, err := filepath.Glob(filepath.Join(d.root, "snapshots", "*.json"))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "list snapshots: %v", err)
	}
	sort.Strings(metas)
	var entries []*csi.ListSnapshotsResponse_Entry
	for _, m := range metas {
		r, err := d.readSnapshot(filepath.Base(m[:len(m)-len(".json")]))
		if err != nil {
			continue
		}
		if src := req.GetSourceVolumeId(); src != "" && r.SourceVolumeID != src {
			continue
		}
		entries = append(entries, &csi.ListSnapshotsResponse_Entry{Snapshot: r.csi(now)})
	}
	start := 0
	if tok := req.GetStartingToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(entries) {
			return nil, status.Errorf(codes.Aborted, "starting token %q is not valid", tok)
		}
		start = n
	}
	entries = entries[start:]
	resp := &csi.ListSnapshotsResponse{Entries: entries}
	if max := int(req.GetMaxEntries()); max > 0 && len(entries) > max {
		resp.Entries = entries[:max]
		resp.NextToken = strconv.Itoa(start + max)
	}
	return resp, nil
}
