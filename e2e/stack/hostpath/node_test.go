package hostpath

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// The node side's mounts are exercised on the stack's real node (every e2e
// test whose pod has a PVC); these check what kubelet is told and refused.
func TestNodeRegistersAsACSIPluginAtItsSocket(t *testing.T) {
	n, err := NewNode(NodeOptions{Name: "hostpath.test", NodeID: "node-a", Root: t.TempDir(), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	n.endpoint = "/var/lib/kubelet/plugins/hostpath.test/csi.sock"
	info, err := n.GetInfo(context.Background(), &registerapi.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != registerapi.CSIPlugin || info.Name != "hostpath.test" || info.Endpoint != n.endpoint || len(info.SupportedVersions) != 1 || info.SupportedVersions[0] != "1.0.0" {
		t.Fatalf("GetInfo = %+v", info)
	}
	got, err := n.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	if err != nil || got.NodeId != "node-a" {
		t.Fatalf("NodeGetInfo = %+v, %v; want node-a", got, err)
	}
}

func TestNodePublishRefusesWhatItCannotMount(t *testing.T) {
	n, err := NewNode(NodeOptions{Name: "hostpath.test", NodeID: "node-a", Root: t.TempDir(), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	mount := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}}
	cases := map[string]struct {
		req  *csi.NodePublishVolumeRequest
		code codes.Code
	}{
		"a volume ID that is not a single path element": {
			req: &csi.NodePublishVolumeRequest{VolumeId: "../etc", TargetPath: "/tmp/x", VolumeCapability: mount}, code: codes.InvalidArgument,
		},
		"a relative target path": {
			req: &csi.NodePublishVolumeRequest{VolumeId: "v1", TargetPath: "x", VolumeCapability: mount}, code: codes.InvalidArgument,
		},
		"a block volume": {
			req: &csi.NodePublishVolumeRequest{VolumeId: "v1", TargetPath: "/tmp/x", VolumeCapability: &csi.VolumeCapability{
				AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}},
			code: codes.InvalidArgument,
		},
		"a volume that does not exist": {
			req: &csi.NodePublishVolumeRequest{VolumeId: "missing", TargetPath: t.TempDir() + "/mount", VolumeCapability: mount}, code: codes.NotFound,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := n.NodePublishVolume(context.Background(), tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("NodePublishVolume = %v, want code %s", err, tc.code)
			}
		})
	}
}

func TestUnescapeMountPath(t *testing.T) {
	if got := unescapeMountPath(`/var/lib/a\040b\134c`); got != `/var/lib/a b\c` {
		t.Fatalf("unescapeMountPath = %q", got)
	}
}
