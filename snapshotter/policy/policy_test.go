package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func statefulSet(ann map[string]string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "postgres", Annotations: ann},
		Spec: appsv1.StatefulSetSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres"}, {Name: "exporter"}}}},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{
				{ObjectMeta: metav1.ObjectMeta{Name: "data"}},
				{ObjectMeta: metav1.ObjectMeta{Name: "wal"}},
			},
		},
	}
}

func TestParseDefaults(t *testing.T) {
	p, errs := Parse(statefulSet(map[string]string{"unrelated.io/x": "y"}))
	if len(errs) != 0 {
		t.Fatalf("errs = %v", errs)
	}
	if !slices.Equal(p.On, AllTriggers) || p.WaitFor != WaitReady || p.Skip != "" || len(p.Claims) != 0 {
		t.Fatalf("defaults = %+v, want every trigger, wait for ready, all claims", p)
	}
}

func TestParseValues(t *testing.T) {
	p, errs := Parse(statefulSet(map[string]string{
		On:            " template , delete,template",
		Claims:        "data",
		SnapshotClass: "fast-snapshots",
		WaitFor:       "cut",
		Skip:          "hotfix",
		Keep:          "5",
		PreHook:       `["psql","-c","CHECKPOINT"]`,
		HookContainer: "postgres",
		HookTimeout:   "10s",
		HookOnError:   "Continue",
		HookPreset:    "postgres",
		RollbackTo:    "latest",
		Schedule:      "0 2 * * *",
		MaxAge:        "168h",
		LastSnapshots: `{"data-postgres-0":"data-postgres-0-3f9a1c2b"}`,
	}))
	if len(errs) != 0 {
		t.Fatalf("errs = %v", errs)
	}
	want := Policy{
		On: []Reason{ReasonTemplate, ReasonDelete}, Claims: []string{"data"}, SnapshotClass: "fast-snapshots",
		WaitFor: WaitCut, Skip: "hotfix", Keep: 5, RollbackTo: "latest", MaxAge: 168 * time.Hour,
		Hooks: Hooks{Pre: []string{"psql", "-c", "CHECKPOINT"}, Container: "postgres", Timeout: 10 * time.Second, OnError: "Continue", Preset: "postgres"},
	}
	if !equalPolicy(p, want) {
		t.Fatalf("policy = %+v\nwant     %+v", p, want)
	}
	if !p.Triggers(ReasonDelete) || p.Triggers(ReasonScaleDown) {
		t.Fatalf("Triggers disagrees with On = %v", p.On)
	}
	from := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	if p.Schedule == nil || !p.Schedule.Next(from).Equal(time.Date(2026, 12, 3, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("schedule 0 2 * * * after %s: %v", from, p.Schedule)
	}
}

func equalPolicy(a, b Policy) bool {
	return slices.Equal(a.On, b.On) && slices.Equal(a.Claims, b.Claims) && a.SnapshotClass == b.SnapshotClass &&
		a.WaitFor == b.WaitFor && a.Skip == b.Skip && a.Keep == b.Keep && a.RollbackTo == b.RollbackTo && a.MaxAge == b.MaxAge &&
		slices.Equal(a.Hooks.Pre, b.Hooks.Pre) && slices.Equal(a.Hooks.Post, b.Hooks.Post) &&
		a.Hooks.Container == b.Hooks.Container && a.Hooks.Timeout == b.Hooks.Timeout &&
		a.Hooks.OnError == b.Hooks.OnError && a.Hooks.Preset == b.Hooks.Preset
}

func TestParseErrorsNameTheAnnotationValueAndFix(t *testing.T) {
	tests := map[string]struct {
		key, value string
		want       []string
	}{
		"an unknown trigger":       {On, "template,upgrade", []string{`metadata.annotations[snapgate.io/on]`, `"upgrade"`, `"template", "scale-down", "delete"`}},
		"an empty trigger list":    {On, " , ", []string{"snapgate.io/on", "list at least one of", Skip}},
		"a claim the set lacks":    {Claims, "data,logs", []string{"snapgate.io/claims", `no volumeClaimTemplate "logs"`, "it has: data, wal"}},
		"a class that is no name":  {SnapshotClass, "Fast_Class", []string{"snapgate.io/snapshot-class", `"Fast_Class"`, "VolumeSnapshotClass"}},
		"a wait that is not known": {WaitFor, "soon", []string{"snapgate.io/wait-for", `"soon"`, `"ready", "cut"`}},
		"a skip without a reason":  {Skip, "  ", []string{"snapgate.io/skip", "give the reason"}},
		"a keep that is no number": {Keep, "all", []string{"snapgate.io/keep", `"all"`, "from 1 to 1000"}},
		"a hook given as a shell line": {PreHook, "psql -c CHECKPOINT", []string{
			"snapgate.io/pre-hook", "JSON list of strings", "runs no shell",
		}},
		"a container the pod lacks": {HookContainer, "sidecar", []string{"snapgate.io/hook-container", `no container "sidecar"`, "postgres, exporter"}},
		"a timeout past the budget": {HookTimeout, "5m", []string{"snapgate.io/hook-timeout", `"5m"`, "at most 25s"}},
		"an unknown on-error":       {HookOnError, "Ignore", []string{"snapgate.io/hook-on-error", `"Fail", "Continue"`}},
		"an unknown preset":         {HookPreset, "oracle", []string{"snapgate.io/hook-preset", `supported values: "postgres"`}},
		"fsfreeze with a container that mounts no volume": {HookPreset, "fsfreeze", []string{
			"snapgate.io/hook-preset", `container "postgres" mounts none of its volumeClaimTemplates (data, wal)`, "set snapgate.io/hook-container",
		}},
		"a rollback to no set":       {RollbackTo, "Yesterday!", []string{"snapgate.io/rollback-to", `"latest"`}},
		"a schedule that is no cron": {Schedule, "every night", []string{"snapgate.io/schedule", `"every night"`, "five fields", "@daily"}},
		"a max-age too short":        {MaxAge, "10m", []string{"snapgate.io/max-age", `"10m"`, "at least 1h0m0s", "168h"}},
		"a typo of a known key":      {"snapgate.io/snapshotclass", "x", []string{"snapgate.io/snapshotclass", "does not know", SnapshotClass}},
		"an edited record":           {LastSnapshots, "data-0", []string{"snapgate.io/last-snapshots", "written by snapgate"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, errs := Parse(statefulSet(map[string]string{tc.key: tc.value}))
			if len(errs) == 0 {
				t.Fatalf("%s=%q parsed without error", tc.key, tc.value)
			}
			msg := errs.ToAggregate().Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestFSFreezeNeedsTheHookContainerToMountAVolume(t *testing.T) {
	sts := statefulSet(map[string]string{HookPreset: "fsfreeze", HookContainer: "exporter"})
	sts.Spec.Template.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "wal", MountPath: "/wal"}}
	if _, errs := Parse(sts); len(errs) != 0 {
		t.Fatalf("errs = %v; the exporter mounts the wal volume", errs)
	}
}

func TestDefaultHookContainer(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	sidecarFirst := func() *appsv1.StatefulSet {
		sts := statefulSet(nil)
		// A mesh puts its proxy first (istio's holdApplicationUntilProxyStarts).
		sts.Spec.Template.Spec.Containers = []corev1.Container{{Name: "istio-proxy"}, {Name: "postgres", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}}}}
		return sts
	}
	tests := map[string]struct {
		sts  *appsv1.StatefulSet
		ann  map[string]string
		want string
	}{
		"the first container, when none mounts a claim":     {statefulSet(nil), nil, "postgres"},
		"the first container that mounts a claim":           {sidecarFirst(), nil, "postgres"},
		"kubectl.kubernetes.io/default-container wins":      {sidecarFirst(), map[string]string{DefaultContainer: "istio-proxy"}, "istio-proxy"},
		"a default-container the pod lacks is not followed": {sidecarFirst(), map[string]string{DefaultContainer: "gone"}, "postgres"},
		"a native sidecar that mounts the claim": {func() *appsv1.StatefulSet {
			sts := statefulSet(nil)
			sts.Spec.Template.Spec.InitContainers = []corev1.Container{
				{Name: "init", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
				{Name: "backup-agent", RestartPolicy: &always, VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}},
			}
			return sts
		}(), nil, "backup-agent"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := DefaultHookContainer(tc.ann, &tc.sts.Spec.Template.Spec, tc.sts); got != tc.want {
				t.Fatalf("DefaultHookContainer = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestANativeSidecarIsAHookContainer(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	sts := statefulSet(map[string]string{HookPreset: "fsfreeze", HookContainer: "freezer"})
	sts.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "freezer", RestartPolicy: &always, VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}}
	if _, errs := Parse(sts); len(errs) != 0 {
		t.Fatalf("errs = %v; a native sidecar is a container hooks can run in", errs)
	}
	sts.Spec.Template.Spec.InitContainers[0].RestartPolicy = nil // a plain init container has finished
	if _, errs := Parse(sts); len(errs) != 1 || !strings.Contains(errs[0].Error(), `no container "freezer"`) {
		t.Fatalf("errs = %v; want a plain init container refused", errs)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, errs := Parse(statefulSet(map[string]string{WaitFor: "soon", Keep: "0", HookOnError: "Maybe"}))
	if len(errs) != 3 {
		t.Fatalf("got %d errors, want 3: %v", len(errs), errs)
	}
}

func FuzzParseAnnotations(f *testing.F) {
	for _, seed := range [][2]string{
		{On, "template,delete"}, {Claims, "data"}, {Keep, "3"}, {PreHook, `["a","b"]`},
		{HookTimeout, "1s"}, {LastSnapshots, `{"a":"b"}`}, {"snapgate.io/x", ""}, {On, ","},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		p, errs := ParseAnnotations(map[string]string{key: value})
		// Whatever the input, the parser never panics, every error names the key,
		// and a clean parse yields a usable policy.
		for _, e := range errs {
			if !strings.Contains(e.Error(), key) {
				t.Fatalf("error %q does not name annotation %q", e.Error(), key)
			}
		}
		if len(errs) == 0 {
			if len(p.On) == 0 || (p.WaitFor != WaitReady && p.WaitFor != WaitCut) {
				t.Fatalf("clean parse of %q=%q gave an unusable policy %+v", key, value, p)
			}
			if key == PreHook && len(p.Hooks.Pre) == 0 {
				t.Fatalf("clean parse of %q=%q gave no hook", key, value)
			}
		}
	})
}
