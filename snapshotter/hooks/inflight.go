package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/snapgate/snapgate/snapshotter"
)

// InFlightDuration is how long a record of post-hooks in flight lives
// unrenewed: a replica that dies leaves its application quiesced about this
// long, plus the Thawer's interval, before another replica runs its post-hooks.
const InFlightDuration = 15 * time.Second

// InFlight records the post-hooks a replica owes while its hooks are in flight:
// a Lease in snapgate's namespace that the replica renews until every post-hook
// has run. A replica that dies (or stalls) stops renewing it, and the Thawer of
// whichever replica leads runs the owed post-hooks once the Lease expires:
// seconds, where the in-pod bounds (presets.MySQLLockBound, presets.FreezeBound) take a minute.
type InFlight struct {
	// Client creates, renews and deletes the records.
	Client client.Client
	// Namespace is snapgate's own namespace.
	Namespace string
	// Identity names this replica as the records' holder.
	Identity string
	// Duration is how long a record lives unrenewed; it is renewed three times
	// as often.
	Duration time.Duration
	// Clock tells the time and ticks the renewals; the real clock when nil.
	Clock clock.WithTicker
}

func (in *InFlight) clock() clock.WithTicker {
	if in.Clock != nil {
		return in.Clock
	}
	return clock.RealClock{}
}

// Owed is the post-hook owed to one pod.
type Owed struct {
	Pod  string   `json:"pod"`
	Post []string `json:"post"`
}

// Owing is the content of an in-flight record.
type Owing struct {
	Namespace   string `json:"namespace"`
	StatefulSet string `json:"statefulSet"`
	Pods        []Owed `json:"pods"`
}

// held is a record its holder renews until end.
type held struct {
	in    *InFlight
	lease *coordinationv1.Lease
	owing Owing
	stop  context.CancelFunc
	done  chan struct{}
}

// begin records the post-hooks owed to targets, before any pre-hook runs, and
// renews the record until end.
func (in *InFlight) begin(ctx context.Context, sts *appsv1.StatefulSet, targets []target) (*held, error) {
	owing := Owing{Namespace: sts.Namespace, StatefulSet: sts.Name}
	for _, t := range targets {
		if len(t.hook.Post) > 0 {
			owing.Pods = append(owing.Pods, Owed{Pod: t.pod, Post: t.hook.Post})
		}
	}
	if len(owing.Pods) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(owing)
	if err != nil {
		return nil, err
	}
	now := metav1.NewMicroTime(in.clock().Now())
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "snapgate-hooks-",
			Namespace:    in.Namespace,
			Labels:       map[string]string{snapshotter.LabelManagedBy: snapshotter.ManagedBy, snapshotter.LabelComponent: snapshotter.ComponentInFlight},
			Annotations:  map[string]string{snapshotter.AnnotationOwed: string(b)},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(in.Identity),
			LeaseDurationSeconds: ptr.To(int32(in.Duration / time.Second)),
			AcquireTime:          &now,
			RenewTime:            &now,
		},
	}
	if err := in.Client.Create(ctx, lease); err != nil {
		return nil, fmt.Errorf("record the post-hooks in flight in namespace %s: %w", in.Namespace, err)
	}
	// Renewal outlives the request's context: the post-hooks run after it.
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h := &held{in: in, lease: lease, owing: owing, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		// Not at once, as wait.Until would: the record was written just now.
		tick := in.clock().NewTicker(in.Duration / 3)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C():
				h.renew(rctx)
			}
		}
	}()
	return h, nil
}

func (h *held) renew(ctx context.Context) {
	patch := client.MergeFrom(h.lease.DeepCopy())
	h.lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(h.in.clock().Now()))
	if err := h.in.Client.Patch(ctx, h.lease, patch); err != nil && ctx.Err() == nil {
		log.FromContext(ctx).Error(err, "Renewing the record of post-hooks in flight", "lease", h.lease.Name)
	}
}

// end stops renewing the record, and deletes it when every post-hook has run;
// otherwise it leaves only the failed pods in it, for the Thawer to retry once
// it expires.
func (h *held) end(ctx context.Context, failed []string) error {
	if h == nil {
		return nil
	}
	h.stop()
	<-h.done
	if len(failed) == 0 {
		err := h.in.Client.Delete(ctx, h.lease)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete the record of post-hooks in flight %s: %w", h.lease.Name, err)
		}
		return nil
	}
	owing := h.owing
	owing.Pods = slices.DeleteFunc(slices.Clone(owing.Pods), func(o Owed) bool { return !slices.Contains(failed, o.Pod) })
	// Not held: the Thawer tries once it expires, as its last renewal says.
	return setOwing(ctx, h.in.Client, h.lease, owing, time.Time{}, 0)
}

// setOwing writes what is still owed into a record and, with hold, holds it
// again: it expires after hold from now.
func setOwing(ctx context.Context, c client.Client, lease *coordinationv1.Lease, owing Owing, now time.Time, hold time.Duration) error {
	b, err := json.Marshal(owing)
	if err != nil {
		return err
	}
	patch := client.MergeFromWithOptions(lease.DeepCopy(), client.MergeFromWithOptimisticLock{})
	lease.Annotations[snapshotter.AnnotationOwed] = string(b)
	if hold > 0 {
		lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(now))
		lease.Spec.LeaseDurationSeconds = ptr.To(int32(hold / time.Second))
	}
	if err := c.Patch(ctx, lease, patch); err != nil {
		return fmt.Errorf("record the post-hooks still owed in %s: %w", lease.Name, err)
	}
	return nil
}

// untilExpiry is how long until a record expires: its holder has stopped
// renewing it when this is not above zero.
func untilExpiry(l *coordinationv1.Lease, now time.Time) time.Duration {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return 0
	}
	return l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second).Sub(now)
}
