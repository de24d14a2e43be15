package framework

import (
	"fmt"
	"sort"
	"strings"
)

// GuardedSet is a guarded StatefulSet as a user writes one: the guard label,
// snapgate's annotations, a volumeClaimTemplate "data", and the pod's
// containers as the test gives them.
type GuardedSet struct {
	Name     string
	Replicas int
	// Annotations go on the StatefulSet (snapgate.io/...); PodAnnotations on its
	// pod template (Velero's hooks).
	Annotations, PodAnnotations map[string]string
	// PodSpec is the pod spec's body (containers:, volumes: ...), as YAML
	// indented by six spaces.
	PodSpec string
	// StorageClass of the claims; empty is the cluster's default. Storage
	// defaults to 1Gi.
	StorageClass, Storage string
	// Spec is more of the StatefulSet's spec, as YAML indented by two spaces
	// (persistentVolumeClaimRetentionPolicy: ...).
	Spec string
}

// YAML renders the StatefulSet.
func (s GuardedSet) YAML() string {
	storage := s.Storage
	if storage == "" {
		storage = "1Gi"
	}
	class := ""
	if s.StorageClass != "" {
		class = "      storageClassName: " + s.StorageClass + "\n"
	}
	podAnn := ""
	if len(s.PodAnnotations) > 0 {
		podAnn = "      annotations:\n" + yamlMap("        ", s.PodAnnotations)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: %[1]s
  labels:
    snapgate.io/guard: enabled
  annotations:
%[3]sspec:
  serviceName: %[1]s
  replicas: %[2]d
  podManagementPolicy: Parallel
%[4]s  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
%[5]s    spec:
%[6]s  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
%[7]s      resources:
        requests:
          storage: %[8]s
`, s.Name, s.Replicas, yamlMap("    ", s.Annotations), s.Spec, podAnn, s.PodSpec, class, storage)
}

// yamlMap renders a map of strings as YAML lines, sorted, values quoted; an
// empty map renders as {} on the line before (an annotations: key).
func yamlMap(indent string, m map[string]string) string {
	if len(m) == 0 {
		return indent + "{}\n"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s%s: %q\n", indent, k, m[k])
	}
	return b.String()
}

// SleepingApp is the command of a stand-in application in busybox: it runs
// until it is told to stop, and stops at once on SIGTERM as an application does
// (a sleep as PID 1 would ignore it and make every pod replacement wait out the
// grace period).
const SleepingApp = `[sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]`
