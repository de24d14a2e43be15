package follow

import (
	"context"
	"fmt"
	"sync"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
)

// DefaultReadyDeadline is how long a set may take to become ready before it
// is told overdue: EBS snapshots can stay pending for hours.
const DefaultReadyDeadline = 4 * time.Hour

// Follower follows every snapshot set of snapgate's to ready. A request names
// a set: its namespace, and the set's name.
type Follower struct {
	// Client reads VolumeSnapshots from the cache and annotates them.
	Client client.Client
	// ReadyDeadline is how long after it was taken a set may still be not
	// ready; DefaultReadyDeadline when zero.
	ReadyDeadline time.Duration
	// Events tells each finding on the set's StatefulSet.
	Events events.EventRecorder
	// Metrics, when set, counts the findings.
	Metrics *Metrics
	// Clock tells the time; the real clock when nil.
	Clock clock.PassiveClock

	// told is the last finding told of each set, so that a reconcile that
	// reads the cache before it holds the marks just written tells nothing
	// twice; the marks keep it across restarts.
	mu   sync.Mutex
	told map[types.NamespacedName]string
}

var _ reconcile.Reconciler = (*Follower)(nil)

// SetupWithManager registers the follower on snapgate's VolumeSnapshots, by
// the set each belongs to.
func (f *Follower) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("follow").
		Watches(&snapv1.VolumeSnapshot{}, snapshotter.Coalesced(snapshotter.SetRequest, snapshotter.CoalesceDelay), builder.WithPredicates(snapshotter.SetChanges())).
		Complete(f)
}

// state is what a set's snapshots say of it.
type state struct {
	snaps       []snapv1.VolumeSnapshot
	ready       int
	failed      string // "<snapshot>: <the driver's message>"
	takenAt     time.Time
	waitFor     string
	followed    string
	sts, stsUID string
}

// Reconcile looks at one set and tells what is new about it.
func (f *Follower) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var list snapv1.VolumeSnapshotList
	// Not copied: the set is listed on each of its snapshots' updates, and
	// tell copies a snapshot before it writes to it.
	if err := f.Client.List(ctx, &list, client.InNamespace(req.Namespace),
		client.MatchingLabels{snapshotter.LabelSet: req.Name, snapshotter.LabelManagedBy: snapshotter.ManagedBy}, client.UnsafeDisableDeepCopy); err != nil {
		return reconcile.Result{}, fmt.Errorf("list snapshots of set %s: %w", req.Name, err)
	}
	s := summarize(list.Items)
	if len(s.snaps) == 0 {
		f.forget(req.NamespacedName)
		return reconcile.Result{}, nil // pruned, or being deleted
	}
	if told := f.lastTold(req.NamespacedName); told != "" && s.followed == "" {
		s.followed = told
	}
	switch {
	case s.failed != "":
		if s.followed != snapshotter.FollowedFailed {
			return reconcile.Result{}, f.tell(ctx, req.Name, s, snapshotter.FollowedFailed, corev1.EventTypeWarning, "SnapshotSetFailed",
				"Snapshot set %s cannot restore anything: snapshot %s; take a new one (`kubectl snapgate snapshot sts/%s`) and delete this one",
				req.Name, s.failed, s.sts)
		}
	case s.ready == len(s.snaps):
		// Told only of a set admitted at cut (one admitted at ready was told
		// so when it was taken), or of one that was told overdue.
		if s.followed != snapshotter.FollowedReady && (s.waitFor != "" || s.followed == snapshotter.FollowedOverdue) {
			return reconcile.Result{}, f.tell(ctx, req.Name, s, snapshotter.FollowedReady, corev1.EventTypeNormal, "SnapshotSetReady",
				"Snapshot set %s is ready (%s), %s after it was taken", req.Name, snapshotter.Count(len(s.snaps), "snapshot"), f.age(s))
		}
	default:
		left := f.readyDeadline() - f.clock().Since(s.takenAt)
		if left > 0 {
			return reconcile.Result{RequeueAfter: left}, nil
		}
		if s.followed != snapshotter.FollowedOverdue {
			return reconcile.Result{}, f.tell(ctx, req.Name, s, snapshotter.FollowedOverdue, corev1.EventTypeWarning, "SnapshotSetOverdue",
				"Snapshot set %s is not ready %s after it was taken (%d of %s ready; ready deadline %s): it cannot restore until it is. The CSI driver may still be uploading; `kubectl describe volumesnapshot -n %s -l %s=%s` shows its snapshots",
				req.Name, f.age(s), s.ready, snapshotter.Count(len(s.snaps), "snapshot"), f.readyDeadline(), req.Namespace, snapshotter.LabelSet, req.Name)
		}
	}
	return reconcile.Result{}, nil
}

func summarize(items []snapv1.VolumeSnapshot) state {
	var s state
	for i := range items {
		vs := &items[i]
		if vs.DeletionTimestamp != nil {
			continue
		}
		s.snaps = append(s.snaps, *vs)
		if t := snapshotter.TakenAt(vs); s.takenAt.IsZero() || t.Before(s.takenAt) {
			s.takenAt = t
		}
		if st := vs.Status; st != nil && st.ReadyToUse != nil && *st.ReadyToUse {
			s.ready++
		}
		if msg, failed := snapshotter.Failure(vs); failed && s.failed == "" {
			s.failed = vs.Name + ": " + msg
		}
		if w := vs.Annotations[snapshotter.AnnotationWaitFor]; w != "" {
			s.waitFor = w
		}
		// A finding is told once all snapshots carry it: one written to only
		// some (a crash half-way) is written again.
		if len(s.snaps) == 1 || s.followed == vs.Annotations[snapshotter.AnnotationFollowed] {
			s.followed = vs.Annotations[snapshotter.AnnotationFollowed]
		} else {
			s.followed = ""
		}
		s.sts, s.stsUID = snapshotter.StatefulSetName(vs), vs.Annotations[snapshotter.AnnotationStatefulSetUID]
	}
	return s
}

func (f *Follower) lastTold(set types.NamespacedName) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.told[set]
}

func (f *Follower) forget(set types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.told, set)
}

// tell records a finding: the Event and the metric first, then the mark on
// every snapshot, so a crash in between tells it again rather than never.
func (f *Follower) tell(ctx context.Context, set string, s state, finding, kind, reason, format string, args ...any) error {
	key := types.NamespacedName{Namespace: s.snaps[0].Namespace, Name: set}
	f.mu.Lock()
	if f.told == nil {
		f.told = map[types.NamespacedName]string{}
	}
	f.told[key] = finding
	f.mu.Unlock()
	if f.Events != nil {
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: s.snaps[0].Namespace, Name: s.sts, UID: types.UID(s.stsUID)}}
		first := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: s.snaps[0].Namespace, Name: s.snaps[0].Name}}
		f.Events.Eventf(sts, first, kind, reason, "Follow", format, args...)
	}
	f.Metrics.observe(finding)
	log.FromContext(ctx).Info("Snapshot set followed", "set", set, "finding", finding, "ready", s.ready, "snapshots", len(s.snaps))
	for i := range s.snaps {
		listed := &s.snaps[i]
		if listed.Annotations[snapshotter.AnnotationFollowed] == finding {
			continue
		}
		// listed shares its maps with the cache: the mark goes on a copy.
		vs := listed.DeepCopy()
		patch := client.MergeFrom(listed)
		if vs.Annotations == nil {
			vs.Annotations = map[string]string{}
		}
		vs.Annotations[snapshotter.AnnotationFollowed] = finding
		if err := f.Client.Patch(ctx, vs, patch); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("mark snapshot %s of set %s %s: %w", vs.Name, set, finding, err)
		}
	}
	return nil
}

func (f *Follower) age(s state) string {
	return duration.HumanDuration(f.clock().Since(s.takenAt))
}

func (f *Follower) readyDeadline() time.Duration {
	if f.ReadyDeadline > 0 {
		return f.ReadyDeadline
	}
	return DefaultReadyDeadline
}

func (f *Follower) clock() clock.PassiveClock {
	if f.Clock != nil {
		return f.Clock
	}
	return clock.RealClock{}
}

// Metrics are the follower's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	findings *prometheus.CounterVec
}

// NewMetrics creates the follower's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{findings: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "snapgate_sets_followed_total",
		Help: "Snapshot sets followed after admission, by finding: ready (a set admitted at cut became ready), failed (a snapshot failed), overdue (not ready by the ready deadline).",
	}, []string{"finding"})}
	if err := reg.Register(m.findings); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) observe(finding string) {
	if m != nil {
		m.findings.WithLabelValues(finding).Inc()
	}
}
