package snapshotter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Change is one change to a StatefulSet that may need a snapshot set.
type Change struct {
	// Reason is what kind of change it is.
	Reason policy.Reason
	// Old is the StatefulSet as stored before the change.
	Old *appsv1.StatefulSet
	// NewTemplate is the pod template after a template change; nil otherwise.
	NewTemplate *corev1.PodTemplateSpec
	// NewReplicas is the replica count after the change (0 for a delete).
	NewReplicas int32
	// UserInfo is who asked for the change, as the API server authenticated
	// them: for messages, and for access checks on their behalf.
	UserInfo authenticationv1.UserInfo
	// Nonce makes a set unique where the spec alone would not (a snapshot taken
	// on demand); empty for a change, whose retries must find their set.
	Nonce string
	// RecordPending marks a change that cannot carry the record itself (a scale
	// through the scale subresource): the Recorder writes it afterwards.
	RecordPending bool
}

// Plan is the snapshot set a change needs.
type Plan struct {
	// StatefulSet is the StatefulSet being changed.
	StatefulSet types.NamespacedName
	// Set is the set's name, unique to this change (see SetHash).
	Set string
	// Reason is what the set is taken for.
	Reason policy.Reason
	// WaitFor is how far the set must get before the change is admitted.
	WaitFor policy.Wait
	// Snapshots are the VolumeSnapshots of the set, by ordinal then claim.
	Snapshots []PlannedSnapshot
	// LeftOut are the affected PVCs the set does not snapshot: they hold no
	// data (they do not exist, or have no volume yet). Known once checked.
	LeftOut []LeftOut
	// Policy is what the StatefulSet's annotations asked for.
	Policy policy.Policy
	// Change is the change the set is taken for.
	Change Change
	// Group is how the snapshots are cut together: GroupNone (or empty) for
	// one VolumeSnapshot per PVC, else one VolumeGroupSnapshot of class
	// GroupClass per replica or for the whole set. Known once checked.
	Group      policy.Grouping
	GroupClass string

	// takenAt is when Take started creating the set.
	takenAt time.Time
	// checked says PVCs and classes were read; a plan of an existing set
	// skips that, and must be completed before it creates anything.
	checked bool
}

// PlannedSnapshot is one VolumeSnapshot of a plan.
type PlannedSnapshot struct {
	Name    string
	PVC     string
	Claim   string
	Ordinal int32
	Class   string
	pvcSpec corev1.PersistentVolumeClaimSpec
	// driver is the CSI driver of the PVC's volume.
	driver string
}

// LeftOut is an affected PVC that a set does not snapshot, and why.
type LeftOut struct {
	PVC     string
	Ordinal int32
	Why     string
}

func (l LeftOut) String() string {
	return fmt.Sprintf("PVC %s of replica %d %s", l.PVC, l.Ordinal, l.Why)
}

// PlanError is a change that cannot be snapshotted as asked; its message tells the
// user what to do.
type PlanError struct{ msg string }

func (e *PlanError) Error() string { return e.msg }

func planErrorf(format string, args ...any) error {
	return &PlanError{msg: fmt.Sprintf(format, args...)}
}

// Affected is the ordinals a change touches: every current replica for a new
// template or a delete, the removed ones for a scale-down.
func Affected(c Change) []int32 {
	start, before := StartOrdinal(c.Old), Replicas(c.Old)
	from := start
	if c.Reason == policy.ReasonScaleDown {
		from = start + c.NewReplicas
	}
	var out []int32
	for o := from; o < start+before; o++ {
		out = append(out, o)
	}
	return out
}

// PlanSet works out the set a change needs: for each affected ordinal and each
// claim template (narrowed by snapgate.io/claims) the PVC and its
// VolumeSnapshotClass. It reads, never writes; the PVCs are read in parallel.
// A PVC that does not exist or is not bound holds no data: it is left out of
// the set and named in plan.LeftOut, so that a StatefulSet whose replicas never
// started can still be fixed, and a rollback knows the set never had it.
func PlanSet(ctx context.Context, r client.Reader, c Change, p policy.Policy) (*Plan, error) {
	plan := skeleton(c, p)
	classes := &classCache{byDriver: map[string]string{}}
	// One List for the claims instead of a Get each: at 100 replicas the
	// reads otherwise outrun the client's rate limit inside the budget.
	listed, err := listClaims(ctx, r, c.Old)
	if err != nil {
		return nil, err
	}
	why := make([]string, len(plan.Snapshots))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range plan.Snapshots {
		s := &plan.Snapshots[i]
		g.Go(func() (err error) {
			why[i], err = checkClaim(gctx, r, c.Old, s, listed, p.SnapshotClass, classes)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	kept := plan.Snapshots[:0]
	for i, s := range plan.Snapshots {
		if why[i] != "" {
			plan.LeftOut = append(plan.LeftOut, LeftOut{PVC: s.PVC, Ordinal: s.Ordinal, Why: why[i]})
			continue
		}
		kept = append(kept, s)
	}
	plan.Snapshots = kept
	if err := planGroups(ctx, r, plan); err != nil {
		return nil, err
	}
	plan.checked = true
	return plan, nil
}

// skeleton is the plan as far as it follows from the StatefulSet alone: the set,
// and the name, PVC and claim of every snapshot, without reading anything.
func skeleton(c Change, p policy.Policy) *Plan {
	sts := c.Old
	var newTemplate *corev1.PodTemplateSpec
	if c.Reason == policy.ReasonTemplate || c.Reason == policy.ReasonRestart {
		newTemplate = c.NewTemplate
	}
	hash := SetHash(sts.UID, sts.Generation, c.Reason, newTemplate, c.NewReplicas, c.Nonce)
	plan := &Plan{
		StatefulSet: types.NamespacedName{Namespace: sts.Namespace, Name: sts.Name},
		Set:         SetName(sts.Name, hash),
		Reason:      c.Reason,
		WaitFor:     p.WaitFor,
		Policy:      p,
		Change:      c,
	}
	if mustWaitForReady(c) {
		plan.WaitFor = policy.WaitReady
	}
	for _, ordinal := range Affected(c) {
		for _, t := range sts.Spec.VolumeClaimTemplates {
			if len(p.Claims) > 0 && !slices.Contains(p.Claims, t.Name) {
				continue
			}
			name := ClaimName(t.Name, sts.Name, ordinal)
			plan.Snapshots = append(plan.Snapshots, PlannedSnapshot{Name: SnapshotName(name, hash), PVC: name, Claim: t.Name, Ordinal: ordinal})
		}
	}
	return plan
}

// listClaims reads, in one List, the PVCs that carry the StatefulSet's
// selector labels, as the StatefulSet controller makes them, by name.
func listClaims(ctx context.Context, r client.Reader, sts *appsv1.StatefulSet) (map[string]*corev1.PersistentVolumeClaim, error) {
	if sts.Spec.Selector == nil || len(sts.Spec.Selector.MatchLabels)+len(sts.Spec.Selector.MatchExpressions) == 0 {
		return nil, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		return nil, nil // the API server validated it; a Get each still works
	}
	var list corev1.PersistentVolumeClaimList
	if err := r.List(ctx, &list, client.InNamespace(sts.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("list PVCs of statefulset %s/%s: %w", sts.Namespace, sts.Name, err)
	}
	byName := make(map[string]*corev1.PersistentVolumeClaim, len(list.Items))
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	return byName, nil
}

// checkClaim reads one planned snapshot's PVC (from listed, or by a Get for
// one made without the selector's labels) and picks its class; a PVC that
// holds no data yet is not an error: why says why it is left out.
func checkClaim(ctx context.Context, r client.Reader, sts *appsv1.StatefulSet, s *PlannedSnapshot, listed map[string]*corev1.PersistentVolumeClaim, named string, classes *classCache) (why string, err error) {
	var pvc corev1.PersistentVolumeClaim
	if l, ok := listed[s.PVC]; ok {
		pvc = *l
	} else {
		err = r.Get(ctx, types.NamespacedName{Namespace: sts.Namespace, Name: s.PVC}, &pvc)
	}
	if apierrors.IsNotFound(err) {
		return "does not exist (it holds no data)", nil
	}
	if err != nil {
		return "", fmt.Errorf("get PVC %s/%s: %w", sts.Namespace, s.PVC, err)
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return fmt.Sprintf("is %s, not bound to a volume (it holds no data)", orUnknown(pvc.Status.Phase)), nil
	}
	class, driver, err := snapshotClass(ctx, r, &pvc, named, classes)
	if err != nil {
		return "", err
	}
	s.Class, s.pvcSpec, s.driver = class, pvc.Spec, driver
	return "", nil
}

// classCache holds the default class of each driver and the named class,
// each looked up once per plan.
type classCache struct {
	mu       sync.Mutex
	byDriver map[string]string
	named    *snapv1.VolumeSnapshotClass
	namedErr error
}

// namedClass reads the class snapgate.io/snapshot-class names, once.
func (c *classCache) namedClass(ctx context.Context, r client.Reader, named string) (*snapv1.VolumeSnapshotClass, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.named != nil || c.namedErr != nil {
		return c.named, c.namedErr
	}
	var class snapv1.VolumeSnapshotClass
	err := r.Get(ctx, types.NamespacedName{Name: named}, &class)
	switch {
	case apierrors.IsNotFound(err):
		c.namedErr = planErrorf("VolumeSnapshotClass %q (from %s) does not exist; create it or fix the annotation", named, policy.SnapshotClass)
	case err != nil:
		// Not kept: another claim's read may yet succeed.
		return nil, fmt.Errorf("get VolumeSnapshotClass %s: %w", named, err)
	default:
		c.named = &class
	}
	return c.named, c.namedErr
}

// mustWaitForReady: a change that deletes PVCs (retention policy Delete) leaves
// only the snapshot, so the snapshot must be usable before the PVC goes.
func mustWaitForReady(c Change) bool {
	rp := c.Old.Spec.PersistentVolumeClaimRetentionPolicy
	if rp == nil {
		return false
	}
	switch c.Reason {
	case policy.ReasonScaleDown:
		return rp.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	case policy.ReasonDelete:
		return rp.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	}
	return false
}

func orUnknown(p corev1.PersistentVolumeClaimPhase) string {
	if p == "" {
		return "without a phase"
	}
	return string(p)
}

// snapshotClass is the class named by snapgate.io/snapshot-class, checked against
// the PVC's driver, or the default class of that driver; and the driver.
func snapshotClass(ctx context.Context, r client.Reader, pvc *corev1.PersistentVolumeClaim, named string, cache *classCache) (class, driver string, err error) {
	var pv corev1.PersistentVolume
	if err := r.Get(ctx, types.NamespacedName{Name: pvc.Spec.VolumeName}, &pv); err != nil {
		return "", "", fmt.Errorf("get PV %s of PVC %s/%s: %w", pvc.Spec.VolumeName, pvc.Namespace, pvc.Name, err)
	}
	if pv.Spec.CSI == nil {
		return "", "", planErrorf("PVC %s/%s is bound to PV %s, which is not a CSI volume; snapgate snapshots CSI volumes only", pvc.Namespace, pvc.Name, pv.Name)
	}
	driver = pv.Spec.CSI.Driver
	class, err = driverClass(ctx, r, pvc, driver, named, cache)
	return class, driver, err
}

// driverClass is the class named by snapgate.io/snapshot-class, checked
// against driver, or the default class of driver.
func driverClass(ctx context.Context, r client.Reader, pvc *corev1.PersistentVolumeClaim, driver, named string, cache *classCache) (string, error) {
	if named != "" {
		class, err := cache.namedClass(ctx, r, named)
		if err != nil {
			return "", err
		}
		if class.Driver != driver {
			return "", planErrorf("VolumeSnapshotClass %q (from %s) is for driver %s, but PVC %s/%s is on driver %s; name a class of %s",
				named, policy.SnapshotClass, class.Driver, pvc.Namespace, pvc.Name, driver, driver)
		}
		return named, nil
	}
	cache.mu.Lock()
	defer cache.mu.Unlock()
	if c, ok := cache.byDriver[driver]; ok {
		return c, nil
	}
	var list snapv1.VolumeSnapshotClassList
	if err := r.List(ctx, &list); err != nil {
		return "", fmt.Errorf("list VolumeSnapshotClasses: %w", err)
	}
	var defaults []string
	for _, c := range list.Items {
		if c.Driver == driver && c.Annotations["snapshot.storage.kubernetes.io/is-default-class"] == "true" {
			defaults = append(defaults, c.Name)
		}
	}
	switch len(defaults) {
	case 0:
		return "", planErrorf("no default VolumeSnapshotClass for driver %s (PVC %s/%s); mark one with the annotation "+
			"snapshot.storage.kubernetes.io/is-default-class=true, or name one with %s", driver, pvc.Namespace, pvc.Name, policy.SnapshotClass)
	case 1:
		cache.byDriver[driver] = defaults[0]
		return defaults[0], nil
	default:
		slices.Sort(defaults)
		return "", planErrorf("driver %s has %d default VolumeSnapshotClasses (%s); keep one default, or name one with %s",
			driver, len(defaults), strings.Join(defaults, ", "), policy.SnapshotClass)
	}
}
