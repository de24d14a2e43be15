package hostpath

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// Node is the node side of the hostpath driver, for the stack's real node: it
// bind-mounts a volume's directory (or loop-mounts its filesystem image, see
// FilesystemImage) where kubelet asks, so a container sees the volume at its
// mountPath, and registers itself with kubelet the way
// node-driver-registrar would (that sidecar is not served by the module proxy).
// It must run in the kubelet's mount namespace: its mounts are made there.
type Node struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedNodeServer
	registerapi.UnimplementedRegistrationServer

	name, version, nodeID, root string
	// endpoint is the CSI socket kubelet is told to dial.
	endpoint string
	log      logr.Logger
}

// NodeOptions configure a Node.
type NodeOptions struct {
	// Name is the CSI driver name; Version is reported by GetPluginInfo.
	Name, Version string
	// NodeID is the Kubernetes node's name.
	NodeID string
	// Root is the driver's state directory, as the controller's Options.Root.
	Root string
	// Log receives one line per mount.
	Log logr.Logger
}

// NewNode returns the node service of the driver whose volumes live under opts.Root.
func NewNode(opts NodeOptions) (*Node, error) {
	if opts.Name == "" || opts.Root == "" || opts.NodeID == "" {
		return nil, errors.New("hostpath: Name, Root and NodeID are required")
	}
	if opts.Version == "" {
		opts.Version = "0.1.0"
	}
	return &Node{name: opts.Name, version: opts.Version, nodeID: opts.NodeID, root: opts.Root, log: opts.Log}, nil
}

// GetPluginInfo implements csi.IdentityServer.
func (n *Node) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: n.name, VendorVersion: n.version}, nil
}

// Probe implements csi.IdentityServer.
func (n *Node) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

// GetPluginCapabilities implements csi.IdentityServer: the node side offers no
// controller service.
func (n *Node) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{}, nil
}

// NodeGetInfo implements csi.NodeServer.
func (n *Node) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: n.nodeID}, nil
}

// NodeGetCapabilities implements csi.NodeServer: no staging, so kubelet calls
// NodePublishVolume straight away.
func (n *Node) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{}, nil
}

// NodePublishVolume implements csi.NodeServer: a bind mount of the volume's
// directory on the target path. Idempotent: a target already mounted is left.
func (n *Node) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if err := checkID("volume ID", id); err != nil {
		return nil, err
	}
	if target == "" || !filepath.IsAbs(target) {
		return nil, status.Errorf(codes.InvalidArgument, "target path %q: want an absolute path", target)
	}
	if req.GetVolumeCapability().GetBlock() != nil {
		return nil, status.Error(codes.InvalidArgument, "block volumes are not supported: use volumeMode Filesystem")
	}
	src := VolumeDir(n.root, id)
	if _, err := os.Stat(src); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %s: %v", id, err)
	}
	mounted, err := isMountPoint(target)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "volume %s: %v", id, err)
	}
	if mounted {
		return &csi.NodePublishVolumeResponse{}, nil
	}
	// kubelet makes the target's parent; the target itself is the driver's to make.
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "volume %s: create %s: %v", id, target, err)
	}
	if image := filepath.Join(src, FilesystemImage); fileExists(image) {
		if err := mountFilesystem(image, target, req.GetReadonly()); err != nil {
			return nil, status.Errorf(codes.Internal, "volume %s: %v", id, err)
		}
		n.log.Info("Volume published", "volume", id, "target", target, "fsType", "ext4", "readOnly", req.GetReadonly())
		return &csi.NodePublishVolumeResponse{}, nil
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return nil, status.Errorf(codes.Internal, "volume %s: bind %s on %s: %v", id, src, target, err)
	}
	if req.GetReadonly() {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, 0)
			return nil, status.Errorf(codes.Internal, "volume %s: remount %s read-only: %v", id, target, err)
		}
	}
	n.log.Info("Volume published", "volume", id, "target", target, "readOnly", req.GetReadonly())
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume implements csi.NodeServer. Idempotent: a target that is
// not mounted, or gone, is done.
func (n *Node) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if target == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	for {
		mounted, err := isMountPoint(target)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "volume %s: %v", id, err)
		}
		if !mounted {
			break
		}
		if err := unix.Unmount(target, 0); err != nil {
			return nil, status.Errorf(codes.Internal, "volume %s: unmount %s: %v", id, target, err)
		}
	}
	if err := os.Remove(target); err != nil && !os.IsNotExist(err) {
		return nil, status.Errorf(codes.Internal, "volume %s: remove %s: %v", id, target, err)
	}
	n.log.Info("Volume unpublished", "volume", id, "target", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// GetInfo implements kubelet's plugin registration: a CSI plugin named after
// the driver, reached at its node socket.
func (n *Node) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              n.name,
		Endpoint:          n.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

// NotifyRegistrationStatus implements kubelet's plugin registration.
func (n *Node) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if !st.GetPluginRegistered() {
		n.log.Info("kubelet refused the registration", "error", st.GetError())
	} else {
		n.log.Info("Registered with kubelet", "driver", n.name, "node", n.nodeID)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// ServeNode answers CSI node calls on the unix socket at csiSocket and kubelet's
// registration calls on a socket in registrationDir (kubelet's plugins_registry,
// which kubelet watches), until ctx ends.
func (n *Node) ServeNode(ctx context.Context, csiSocket, registrationDir string) error {
	n.endpoint = csiSocket
	csiLis, err := listenUnix(csiSocket)
	if err != nil {
		return err
	}
	csiSrv := grpc.NewServer()
	csi.RegisterIdentityServer(csiSrv, n)
	csi.RegisterNodeServer(csiSrv, n)

	// The registration socket comes second: once kubelet sees it, it dials the CSI one.
	regLis, err := listenUnix(filepath.Join(registrationDir, n.name+"-reg.sock"))
	if err != nil {
		csiLis.Close()
		return err
	}
	regSrv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(regSrv, n)

	errs := make(chan error, 2)
	for _, s := range []struct {
		srv *grpc.Server
		lis net.Listener
	}{{csiSrv, csiLis}, {regSrv, regLis}} {
		go func() { errs <- s.srv.Serve(s.lis) }()
	}
	n.log.Info("Serving CSI node", "driver", n.name, "node", n.nodeID, "socket", csiSocket)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errs:
	}
	// The registration socket goes first, so kubelet stops using the plugin.
	regSrv.Stop()
	os.Remove(regLis.Addr().String())
	csiSrv.GracefulStop()
	if serveErr != nil && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return fmt.Errorf("serve CSI node: %w", serveErr)
	}
	return nil
}

func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create directory of %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return lis, nil
}

// isMountPoint reports whether path is a mount point in this mount namespace,
// from /proc/self/mountinfo (a bind mount of the same filesystem keeps its
// device number, so comparing devices with the parent would not tell).
func isMountPoint(path string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	clean := filepath.Clean(path)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountPath(fields[4]) == clean {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountPath undoes the octal escapes mountinfo uses for space, tab,
// newline and backslash.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
