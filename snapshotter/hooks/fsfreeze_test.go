package hooks

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// withMounts gives a test pod's containers the StatefulSet's volume "data"
// (twice in postgres, as subPath mounts are) and a volume of its own.
func withMounts(p *corev1.Pod) *corev1.Pod {
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
		{Name: "data", MountPath: "/var/lib/postgresql/data"},
		{Name: "data", MountPath: "/var/lib/postgresql/wal", SubPath: "wal"},
		{Name: "config", MountPath: "/etc/postgresql"},
	}
	return p
}

func TestFSFreezePresetFreezesTheVolumesAsTheContainerMountsThem(t *testing.T) {
	exec := &fakeExec{}
	r := runner(t, exec, false, withMounts(pod("pg-0", "sts", nil)), withMounts(pod("pg-1", "sts", nil)))
	p := plan(policy.Hooks{Preset: "fsfreeze"})
	p.Change.Old.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{}}
	p.Change.Old.Spec.VolumeClaimTemplates[0].Name = "data"
	q, err := r.Quiesce(context.Background(), p)
	if err != nil {
		t.Fatalf("a preset needs no exec right: %v", err)
	}
	if err := q.Thaw(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(exec.calls) != 4 {
		t.Fatalf("calls = %v; want a freeze and a thaw in each of 2 pods", exec.calls)
	}
	for _, c := range exec.calls {
		// One path per volume: a second freeze of the same filesystem fails.
		if !strings.HasSuffix(c, "snapgate-fsfreeze /var/lib/postgresql/data") &&
			!strings.HasSuffix(c, "snapgate-fsfreeze 60 /var/lib/postgresql/data") {
			t.Errorf("call %q; want it to end with the volume's one mount path", c)
		}
	}

	for name, tc := range map[string]struct {
		hooks policy.Hooks
		want  string
	}{
		"a container that mounts no volume of the StatefulSet": {policy.Hooks{Preset: "fsfreeze", Container: "exporter"},
			`container "exporter" mounts none of its volumeClaimTemplates (data): set snapgate.io/hook-container`},
		"a container the pod does not have": {policy.Hooks{Preset: "fsfreeze", Container: "pgbouncer"},
			`has no container "pgbouncer": set snapgate.io/hook-container to one of its containers`},
	} {
		exec.calls = nil
		p.Policy.Hooks = tc.hooks
		if _, err := r.Quiesce(context.Background(), p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v; want %q", name, err, tc.want)
		}
		if len(exec.calls) != 0 {
			t.Errorf("%s: ran %v", name, exec.calls)
		}
	}
}
