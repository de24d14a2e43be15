package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/snapgate/snapgate/snapshotter/presets"
)

// Prefix is the annotation and label prefix snapgate owns.
const Prefix = "snapgate.io/"

// Keys a user sets.
const (
	// GuardLabel opts a StatefulSet, or a whole namespace, in (value "enabled") or,
	// inside a guarded namespace, out (value "disabled").
	GuardLabel = Prefix + "guard"
	// On lists the changes that need a snapshot set: template, scale-down, delete.
	On = Prefix + "on"
	// Claims narrows the set to these volumeClaimTemplates.
	Claims = Prefix + "claims"
	// SnapshotClass names the VolumeSnapshotClass; default: the driver's default.
	SnapshotClass = Prefix + "snapshot-class"
	// WaitFor is how far a set must get before the change is admitted: ready or cut.
	WaitFor = Prefix + "wait-for"
	// Skip lets one change through without snapshots; its value is the reason.
	Skip = Prefix + "skip"
	// Keep is how many snapshot sets to retain.
	Keep = Prefix + "keep"
	// PreHook and PostHook are JSON argv lists run in every affected pod.
	PreHook  = Prefix + "pre-hook"
	PostHook = Prefix + "post-hook"
	// HookContainer names the container hooks run in (see
	// DefaultHookContainer for the default).
	HookContainer = Prefix + "hook-container"
	// HookTimeout bounds each hook.
	HookTimeout = Prefix + "hook-timeout"
	// HookOnError is Fail (deny the change) or Continue.
	HookOnError = Prefix + "hook-on-error"
	// HookPreset names built-in hooks (presets.All): postgres, mysql,
	// mongodb, fsfreeze.
	HookPreset = Prefix + "hook-preset"
	// RollbackTo asks for a rollback to a set, or to the latest one.
	RollbackTo = Prefix + "rollback-to"
	// Schedule takes a set on a cron schedule ("0 2 * * *", @hourly, @daily,
	// @weekly), with reason schedule.
	Schedule = Prefix + "schedule"
	// MaxAge prunes ready sets older than this (a duration such as 168h),
	// besides Keep.
	MaxAge = Prefix + "max-age"
	// Group asks for the snapshots of each replica (replica) or of the whole
	// StatefulSet (statefulset) to be cut as one VolumeGroupSnapshot, or for
	// one VolumeSnapshot per PVC (none). Default: replica where the driver
	// has a default VolumeGroupSnapshotClass and a replica has 2+ claims.
	Group = Prefix + "group"
	// Verify verifies the newest ready set on a cron schedule, as Schedule
	// reads it.
	Verify = Prefix + "verify"
	// VerifyCommand is a JSON argv list a verify runs in each restored pod,
	// instead of the preset's check.
	VerifyCommand = Prefix + "verify-command"
)

// Keys snapgate records.
const (
	// LastSet is the set taken before the last admitted change.
	LastSet = Prefix + "last-set"
	// LastSnapshots maps each PVC of LastSet to its VolumeSnapshot (JSON object).
	LastSnapshots = Prefix + "last-snapshots"
	// LastReason is the change LastSet was taken for.
	LastReason = Prefix + "last-reason"
	// RollbackStatus is the progress of a rollback.
	RollbackStatus = Prefix + "rollback-status"
	// RestoredFrom is on a StatefulSet that `snapgate restore` made: the set
	// it holds a copy of.
	RestoredFrom = Prefix + "restored-from"
)

// ProtectedNamespaces are the namespaces snapgate never guards and never
// execs in: kube-system, and its own (own), whose pods hold its credentials.
func ProtectedNamespaces(own string) []string {
	if own == "" || own == "kube-system" {
		return []string{"kube-system"}
	}
	return []string{"kube-system", own}
}

// Reason is a kind of change that can hurt a StatefulSet's data.
type Reason string

// The reasons, as written in snapgate.io/on and snapgate.io/last-reason.
const (
	ReasonTemplate  Reason = "template"
	ReasonScaleDown Reason = "scale-down"
	ReasonDelete    Reason = "delete"
	// ReasonRestart is a new pod template whose only difference is
	// kubectl.kubernetes.io/restartedAt (kubectl rollout restart): every pod
	// restarts on the same spec, so it is snapshotted only when snapgate.io/on
	// names it.
	ReasonRestart Reason = "restart"
	// ReasonManual is a set taken on demand (snapgate snapshot).
	ReasonManual Reason = "manual"
	// ReasonSchedule is a set taken on snapgate.io/schedule.
	ReasonSchedule Reason = "schedule"
)

// AllTriggers is the default of snapgate.io/on.
var AllTriggers = []Reason{ReasonTemplate, ReasonScaleDown, ReasonDelete}

// Triggers are the values snapgate.io/on takes.
var Triggers = []Reason{ReasonTemplate, ReasonScaleDown, ReasonDelete, ReasonRestart}

// Grouping is how a set's snapshots are cut together (snapgate.io/group).
type Grouping string

// The values of snapgate.io/group.
const (
	GroupReplica     Grouping = "replica"
	GroupStatefulSet Grouping = "statefulset"
	GroupNone        Grouping = "none"
)

// Wait is how far a set must get before the change is admitted.
type Wait string

// The values of snapgate.io/wait-for.
const (
	WaitReady Wait = "ready"
	WaitCut   Wait = "cut"
)

// Policy is what a StatefulSet's annotations ask of snapgate.
type Policy struct {
	// On holds the changes that need a set.
	On []Reason
	// Claims narrows the set to these volumeClaimTemplates; empty means all.
	Claims []string
	// SnapshotClass is the VolumeSnapshotClass; empty means the driver's default.
	SnapshotClass string
	// WaitFor is ready unless the annotation says cut.
	WaitFor Wait
	// Skip, when set, is the reason to let this change through without snapshots.
	Skip string
	// Keep is the number of sets to retain; 0 means the server's default.
	Keep int
	// RollbackTo is a set name or "latest"; empty means no rollback asked.
	RollbackTo string
	// Schedule, when set, takes a set on its times.
	Schedule cron.Schedule
	// MaxAge, when above 0, prunes ready sets older than it.
	MaxAge time.Duration
	// Group is the grouping asked for; empty means the default (see Group).
	Group Grouping
	// Verify, when set, verifies the newest ready set on its times.
	Verify cron.Schedule
	// VerifyCommand, when set, is the check a verify runs in each pod.
	VerifyCommand []string
	// Hooks are the hook annotations, parsed and checked.
	Hooks Hooks
}

// Hooks are the hook annotations; the hook runner decides which source wins.
type Hooks struct {
	Pre, Post []string
	Container string
	// Timeout is zero when not set.
	Timeout time.Duration
	// OnError is "Fail", "Continue" or empty.
	OnError string
	Preset  string
}

// Triggers reports whether changes of reason r need a set.
func (p *Policy) Triggers(r Reason) bool { return slices.Contains(p.On, r) }

// MaxHookTimeout bounds snapgate.io/hook-timeout: a hook runs inside an admission
// request, which the API server ends after 30 s.
const MaxHookTimeout = 25 * time.Second

// Known reports whether key is a snapgate annotation.
func Known(key string) bool { _, ok := parsers[key]; return ok }

// Parse reads a StatefulSet's snapgate annotations. Every problem is returned,
// each naming the annotation, the value and what is allowed; the Policy is
// usable (with defaults) only when the list is empty.
func Parse(sts *appsv1.StatefulSet) (Policy, field.ErrorList) {
	return parse(sts.GetAnnotations(), sts)
}

// ParseAnnotations is Parse without the checks against the StatefulSet's spec
// (claim and container names), for annotations alone.
func ParseAnnotations(annotations map[string]string) (Policy, field.ErrorList) {
	return parse(annotations, nil)
}

func parse(ann map[string]string, sts *appsv1.StatefulSet) (Policy, field.ErrorList) {
	p := Policy{On: AllTriggers, WaitFor: WaitReady}
	var errs field.ErrorList
	path := field.NewPath("metadata", "annotations")

	keys := make([]string, 0, len(ann))
	for k := range ann {
		if strings.HasPrefix(k, Prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys) // errors in a stable order
	for _, k := range keys {
		parse, ok := parsers[k]
		if !ok {
			errs = append(errs, field.Invalid(path.Key(k), ann[k], "snapgate does not know this annotation (a typo?); known annotations: "+strings.Join(known, ", ")))
			continue
		}
		errs = append(errs, parse(&p, ann[k], path.Key(k), sts)...)
	}
	return p, append(errs, checkFreezable(p, sts, path)...)
}

// A parser reads one annotation's value into the policy, and says what is
// wrong with it; sts is nil when annotations are parsed alone.
type parser func(p *Policy, v string, fp *field.Path, sts *appsv1.StatefulSet) field.ErrorList

// annotations are every key snapgate reads or writes, with its parser, in
// the order the "did you mean" message lists them: a new annotation is one
// entry here.
var annotations = []struct {
	key   string
	parse parser
}{
	{On, parseOn},
	{Claims, parseClaims},
	{SnapshotClass, parseSnapshotClass},
	{WaitFor, parseWaitFor},
	{Skip, parseSkip},
	{Keep, parseKeep},
	{PreHook, parseArgv(func(h *Hooks) *[]string { return &h.Pre })},
	{PostHook, parseArgv(func(h *Hooks) *[]string { return &h.Post })},
	{HookContainer, parseHookContainer},
	{HookTimeout, parseHookTimeout},
	{HookOnError, parseHookOnError},
	{HookPreset, parseHookPreset},
	{RollbackTo, parseRollbackTo},
	{Schedule, parseSchedule},
	{MaxAge, parseMaxAge},
	{Group, parseGroup},
	{Verify, parseVerify},
	{VerifyCommand, parseVerifyCommand},
	{LastSet, writtenBySnapgate},
	{LastSnapshots, parseLastSnapshots},
	{LastReason, writtenBySnapgate},
	{RollbackStatus, writtenBySnapgate},
	{RestoredFrom, writtenBySnapgate},
}

// parsers and known are annotations by key, and its keys in order.
var parsers, known = func() (map[string]parser, []string) {
	m := make(map[string]parser, len(annotations))
	keys := make([]string, 0, len(annotations))
	for _, a := range annotations {
		m[a.key] = a.parse
		keys = append(keys, a.key)
	}
	return m, keys
}()

func parseOn(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	var errs field.ErrorList
	p.On = nil
	for _, s := range splitList(v) {
		r := Reason(s)
		if !slices.Contains(Triggers, r) {
			errs = append(errs, field.NotSupported(fp, s, reasons(Triggers)))
			continue
		}
		if !slices.Contains(p.On, r) {
			p.On = append(p.On, r)
		}
	}
	if len(splitList(v)) == 0 {
		errs = append(errs, field.Invalid(fp, v, "list at least one of template, scale-down, delete, restart (comma-separated); to let one change through without snapshots, use "+Skip))
	}
	return errs
}

func parseClaims(p *Policy, v string, fp *field.Path, sts *appsv1.StatefulSet) field.ErrorList {
	var errs field.ErrorList
	p.Claims = splitList(v)
	if len(p.Claims) == 0 {
		errs = append(errs, field.Invalid(fp, v, "list volumeClaimTemplate names, comma-separated; remove the annotation to snapshot every claim"))
	}
	for _, c := range p.Claims {
		if sts != nil && !hasClaimTemplate(sts, c) {
			errs = append(errs, field.Invalid(fp, v, fmt.Sprintf("the StatefulSet has no volumeClaimTemplate %q; it has: %s", c, strings.Join(claimTemplates(sts), ", "))))
		}
	}
	return errs
}

func parseSnapshotClass(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	p.SnapshotClass = v
	if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(fp, v, "must name a VolumeSnapshotClass: "+strings.Join(msgs, "; "))}
	}
	return nil
}

func parseWaitFor(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	switch Wait(v) {
	case WaitReady, WaitCut:
		p.WaitFor = Wait(v)
		return nil
	}
	return field.ErrorList{field.NotSupported(fp, v, []string{string(WaitReady), string(WaitCut)})}
}

func parseSkip(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	p.Skip = v
	if strings.TrimSpace(v) == "" {
		return field.ErrorList{field.Required(fp, "give the reason for skipping the snapshot, e.g. snapgate.io/skip=\"hotfix, backup taken by hand\"")}
	}
	return nil
}

func parseKeep(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	n, err := strconv.Atoi(v)
	p.Keep = n
	if err != nil || n < 1 || n > 1000 {
		return field.ErrorList{field.Invalid(fp, v, "must be a whole number of snapshot sets to keep, from 1 to 1000")}
	}
	return nil
}

// parseArgv reads a hook command into the Hooks field that to picks.
func parseArgv(to func(*Hooks) *[]string) parser {
	return func(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
		argv, msg := parseArgvJSON(v)
		*to(&p.Hooks) = argv
		if msg != "" {
			return field.ErrorList{field.Invalid(fp, v, msg)}
		}
		return nil
	}
}

func parseHookContainer(p *Policy, v string, fp *field.Path, sts *appsv1.StatefulSet) field.ErrorList {
	p.Hooks.Container = v
	if msgs := validation.IsDNS1123Label(v); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(fp, v, "must name a container: "+strings.Join(msgs, "; "))}
	}
	if sts != nil && !hasContainer(sts, v) {
		return field.ErrorList{field.Invalid(fp, v, fmt.Sprintf("the pod template has no container %q; its containers and native sidecars are: %s", v, strings.Join(ContainerNames(&sts.Spec.Template.Spec), ", ")))}
	}
	return nil
}

func parseHookTimeout(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	d, err := time.ParseDuration(v)
	p.Hooks.Timeout = d
	if err != nil || d <= 0 || d > MaxHookTimeout {
		return field.ErrorList{field.Invalid(fp, v, fmt.Sprintf("must be a duration above 0 and at most %s, such as 10s", MaxHookTimeout))}
	}
	return nil
}

func parseHookOnError(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	p.Hooks.OnError = v
	if v != "Fail" && v != "Continue" {
		return field.ErrorList{field.NotSupported(fp, v, []string{"Fail", "Continue"})}
	}
	return nil
}

func parseHookPreset(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	p.Hooks.Preset = v
	if _, ok := presets.All[v]; !ok {
		return field.ErrorList{field.NotSupported(fp, v, presets.Names())}
	}
	return nil
}

func parseRollbackTo(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	p.RollbackTo = v
	if v != "latest" && len(validation.IsDNS1123Label(v)) > 0 {
		return field.ErrorList{field.Invalid(fp, v, "must be \"latest\" or the name of a snapshot set (see `kubectl snapgate list`)")}
	}
	return nil
}

// MinMaxAge bounds snapgate.io/max-age from below: a set must live long
// enough for a change to be rolled back to it.
const MinMaxAge = time.Hour

// ParseSchedule reads a schedule as Kubernetes CronJobs do (robfig/cron):
// five fields, or @hourly, @daily, @weekly, @monthly, @yearly.
func ParseSchedule(v string) (cron.Schedule, error) {
	return cron.ParseStandard(v)
}

func parseSchedule(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	sched, err := ParseSchedule(v)
	if err != nil {
		return field.ErrorList{field.Invalid(fp, v, "must be a cron schedule of five fields (minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\" for 02:00 every day) or @hourly, @daily, @weekly: "+err.Error())}
	}
	p.Schedule = sched
	return nil
}

func parseGroup(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	switch g := Grouping(v); g {
	case GroupReplica, GroupStatefulSet, GroupNone:
		p.Group = g
		return nil
	}
	return field.ErrorList{field.NotSupported(fp, v, []string{string(GroupReplica), string(GroupStatefulSet), string(GroupNone)})}
}

func parseVerify(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	sched, err := ParseSchedule(v)
	if err != nil {
		return field.ErrorList{field.Invalid(fp, v, "must be a cron schedule of five fields (e.g. \"0 4 * * 0\" for 04:00 on Sundays) or @daily, @weekly: "+err.Error())}
	}
	p.Verify = sched
	return nil
}

func parseVerifyCommand(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	argv, msg := parseArgvJSON(v)
	p.VerifyCommand = argv
	if msg != "" {
		return field.ErrorList{field.Invalid(fp, v, msg)}
	}
	return nil
}

func parseMaxAge(p *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	d, err := time.ParseDuration(v)
	p.MaxAge = d
	if err != nil || d < MinMaxAge {
		return field.ErrorList{field.Invalid(fp, v, fmt.Sprintf("must be a duration of at least %s, such as 168h for a week", MinMaxAge))}
	}
	return nil
}

func parseLastSnapshots(_ *Policy, v string, fp *field.Path, _ *appsv1.StatefulSet) field.ErrorList {
	var m map[string]string
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return field.ErrorList{field.Invalid(fp, v, "is written by snapgate as a JSON object of PVC to VolumeSnapshot names; remove it rather than edit it")}
	}
	return nil
}

// writtenBySnapgate: nothing a user sets here changes what snapgate does.
func writtenBySnapgate(*Policy, string, *field.Path, *appsv1.StatefulSet) field.ErrorList { return nil }

// checkFreezable: a preset that freezes the volumes where the hook container
// mounts them needs a container that mounts them (one the template lacks is
// reported on snapgate.io/hook-container).
func checkFreezable(p Policy, sts *appsv1.StatefulSet, path *field.Path) field.ErrorList {
	if !presets.All[p.Hooks.Preset].FreezesMounts || len(p.Hooks.Pre) > 0 || len(p.Hooks.Post) > 0 || sts == nil {
		return nil
	}
	container := p.Hooks.Container
	if container == "" {
		container = DefaultHookContainer(sts.Spec.Template.Annotations, &sts.Spec.Template.Spec, sts)
	}
	if _, err := ClaimMounts(&sts.Spec.Template.Spec, container, sts); err != nil && !errors.Is(err, ErrNoSuchContainer) {
		return field.ErrorList{field.Invalid(path.Key(HookPreset), p.Hooks.Preset,
			"the "+p.Hooks.Preset+" preset freezes the StatefulSet's volumes where the hook container mounts them: "+err.Error())}
	}
	return nil
}

// ErrNoSuchContainer is ClaimMounts' error for a container the pod lacks.
var ErrNoSuchContainer = errors.New("no such container")

// DefaultContainer is the annotation kubectl reads for a pod's default
// container (kubectl exec, logs); service meshes set it where they put their
// proxy first.
const DefaultContainer = "kubectl.kubernetes.io/default-container"

// Containers are a pod's containers and native sidecars (init containers
// with restartPolicy Always, which run beside them): the containers a hook
// can run in.
func Containers(spec *corev1.PodSpec) []*corev1.Container {
	out := make([]*corev1.Container, 0, len(spec.Containers))
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	for i := range spec.InitContainers {
		if c := &spec.InitContainers[i]; c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			out = append(out, c)
		}
	}
	return out
}

// DefaultHookContainer is the container hooks run in when none is named: the one
// kubectl.kubernetes.io/default-container names, else the first that mounts
// one of the StatefulSet's claim volumes (the application's, where a sidecar
// comes first), else the first. Empty when the pod has no containers.
func DefaultHookContainer(podAnnotations map[string]string, spec *corev1.PodSpec, sts *appsv1.StatefulSet) string {
	all := Containers(spec)
	if name := podAnnotations[DefaultContainer]; name != "" && findContainer(all, name) != nil {
		return name
	}
	for _, c := range all {
		for _, m := range c.VolumeMounts {
			if hasClaimTemplate(sts, m.Name) {
				return c.Name
			}
		}
	}
	if len(all) == 0 {
		return ""
	}
	return all[0].Name
}

func findContainer(all []*corev1.Container, name string) *corev1.Container {
	for _, c := range all {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// ContainerNames are the names of a pod's containers and native sidecars.
func ContainerNames(spec *corev1.PodSpec) []string {
	var out []string
	for _, c := range Containers(spec) {
		out = append(out, c.Name)
	}
	return out
}

// ClaimMounts are the paths at which a container (or native sidecar) of a pod
// spec mounts the volumes of the StatefulSet's claim templates (a pod's volume
// is named after its template), one per volume: a filesystem mounted twice is
// frozen once. It is what the fsfreeze preset freezes.
func ClaimMounts(spec *corev1.PodSpec, container string, sts *appsv1.StatefulSet) ([]string, error) {
	c := findContainer(Containers(spec), container)
	if c == nil {
		return nil, fmt.Errorf("%w: the pod has no container %q: set snapgate.io/hook-container to one of its containers or native sidecars (%s)",
			ErrNoSuchContainer, container, strings.Join(ContainerNames(spec), ", "))
	}
	var paths, seen []string
	for _, m := range c.VolumeMounts {
		if hasClaimTemplate(sts, m.Name) && !slices.Contains(seen, m.Name) {
			seen = append(seen, m.Name)
			paths = append(paths, m.MountPath)
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("container %q mounts none of its volumeClaimTemplates (%s): "+
			"set snapgate.io/hook-container to the container that mounts them, or mount them in %q", c.Name, strings.Join(claimTemplates(sts), ", "), c.Name)
	}
	return paths, nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func reasons(rs []Reason) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}

// parseArgvJSON reads a hook command: a JSON list of strings, never a shell line.
func parseArgvJSON(v string) ([]string, string) {
	var argv []string
	if err := json.Unmarshal([]byte(v), &argv); err != nil || len(argv) == 0 || argv[0] == "" {
		return nil, `must be a JSON list of strings, the command and its arguments, e.g. ["psql","-c","CHECKPOINT"]; snapgate runs no shell`
	}
	return argv, ""
}

func hasClaimTemplate(sts *appsv1.StatefulSet, name string) bool {
	return slices.Contains(claimTemplates(sts), name)
}

func claimTemplates(sts *appsv1.StatefulSet) []string {
	var out []string
	for _, t := range sts.Spec.VolumeClaimTemplates {
		out = append(out, t.Name)
	}
	return out
}

func hasContainer(sts *appsv1.StatefulSet, name string) bool {
	return slices.Contains(ContainerNames(&sts.Spec.Template.Spec), name)
}

// ReasonRollback is the safety set a rollback takes of the data it replaces.
const ReasonRollback Reason = "rollback"

// RollbackPhase is one step of a rollback, in the order they run.
type RollbackPhase string

// The phases of a rollback. Every phase but the last two can be resumed: the
// controller records a phase before it acts, and each phase's work is idempotent.
const (
	PhaseChecking    RollbackPhase = "Checking"
	PhaseSafetySet   RollbackPhase = "TakingSafetySet"
	PhaseRetaining   RollbackPhase = "RetainingVolumes"
	PhaseScalingDown RollbackPhase = "ScalingDown"
	PhaseReplacing   RollbackPhase = "ReplacingClaims"
	PhaseRestoring   RollbackPhase = "RestoringTemplate"
	PhaseSucceeded   RollbackPhase = "Succeeded"
	PhaseFailed      RollbackPhase = "Failed"
)

// RollbackState is the value of snapgate.io/rollback-status: where a rollback
// is, written by the controller at every step, so that a restarted controller
// resumes it and a user can follow it.
type RollbackState struct {
	// Request is the value of snapgate.io/rollback-to this rollback answers.
	Request string `json:"request"`
	// Set is the set being restored (Request resolved, once checked).
	Set string `json:"set,omitempty"`
	// Phase is the step the rollback is at, or its outcome.
	Phase RollbackPhase `json:"phase"`
	// ID tells one rollback from another: the time it started.
	ID string `json:"id"`
	// SafetySet is the set taken of the data being replaced.
	SafetySet string `json:"safetySet,omitempty"`
	// RetainedVolumes are the PVs whose data was replaced, kept with reclaim
	// policy Retain.
	RetainedVolumes []string `json:"retainedVolumes,omitempty"`
	// WhenScaledWas is the StatefulSet's PVC retention policy on scale-down
	// before the rollback set it to Retain for its scale to 0; it is put back at
	// the end. Empty when it was Retain already.
	WhenScaledWas string `json:"whenScaledWas,omitempty"`
	// Message says what is happening, or why the rollback failed.
	Message string `json:"message,omitempty"`
}

// InProgress reports whether the rollback has started and not ended.
func (s RollbackState) InProgress() bool {
	return s.Phase != "" && s.Phase != PhaseSucceeded && s.Phase != PhaseFailed
}

// ParseRollbackState reads snapgate.io/rollback-status; ok is false when there
// is none or it cannot be read (a hand-edited value starts nothing).
func ParseRollbackState(annotations map[string]string) (s RollbackState, ok bool) {
	v, found := annotations[RollbackStatus]
	if !found || json.Unmarshal([]byte(v), &s) != nil {
		return RollbackState{}, false
	}
	return s, true
}

// String is the annotation's value.
func (s RollbackState) String() string {
	b, _ := json.Marshal(s) // plain strings always marshal
	return string(b)
}
