package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/reference"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/snapgate/snapgate/snapshotter/hooks"
	"github.com/snapgate/snapgate/snapshotter/verify"
)

// VerifyOptions configure `snapgate verify`.
type VerifyOptions struct {
	Kube *genericclioptions.ConfigFlags
	// Set is the snapshot set to verify, in the namespace of Kube.
	Set string
	// Timeout bounds the wait for the restored pods and the check.
	Timeout time.Duration
	Clock   clock.PassiveClock
}

func newVerifyCommand() *cobra.Command {
	o := &VerifyOptions{Kube: genericclioptions.NewConfigFlags(true), Timeout: verify.DefaultTimeout, Clock: clock.RealClock{}}
	cmd := &cobra.Command{
		Use:   "verify set NAME",
		Short: "Prove a snapshot set restores: restore it as a scratch StatefulSet, check it, delete it",
		Long: `Restores the set beside the live data as a scratch StatefulSet (as snapgate restore does),
waits for its pods to be Ready, and runs a check in each: the StatefulSet's own
snapgate.io/verify-command, else its preset's (postgres: every database accepts a
connection and reads its catalog; mysql: the server lists its tables; mongodb: it
answers a ping), else none beyond Ready. The outcome is recorded on the set's snapshots
(snapgate.io/verified, -at, -how; snapgate list shows it) and told as an Event, and the
scratch objects are deleted. It exits 1 when the set did not verify.`,
		Example: `  snapgate verify set postgres-3f2a9c1d -n db
  kubectl snapgate verify set/postgres-3f2a9c1d --timeout 20m`,
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := setArg(args)
			if err != nil {
				return err
			}
			o.Set = set
			if o.Timeout <= 0 {
				return fmt.Errorf("--timeout=%s: must be above 0", o.Timeout)
			}
			return o.Run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.Kube.AddFlags(cmd.Flags())
	cmd.Flags().DurationVar(&o.Timeout, "timeout", o.Timeout, "give up waiting for the restored pods to be Ready and the check to pass after this long")
	return cmd
}

// errNotVerified is the exit of a verify whose check failed: the outcome is
// printed and recorded already.
var errNotVerified = errors.New("the set did not verify")

// Run verifies the set with the user's own credentials: the API server checks
// their right to create the scratch objects and to exec into its pods.
func (o *VerifyOptions) Run(ctx context.Context, out io.Writer) error {
	ctx = log.IntoContext(ctx, logr.Discard())
	cfg, ns, c, err := connect(o.Kube)
	if err != nil {
		return err
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	v := &verify.Verifier{
		Client: c, Kube: clientset, Exec: &hooks.RemoteExecutor{Config: cfg, Client: clientset},
		Events: &syncEvents{client: clientset, scheme: Scheme()}, Timeout: o.Timeout, Clock: o.Clock,
	}
	res, err := v.Verify(ctx, ns, o.Set, func(s string) { fmt.Fprintln(out, s) })
	if err != nil {
		return err
	}
	if !res.Passed {
		fmt.Fprintf(out, "Set %s did not verify: %s\n", o.Set, res.How)
		return errNotVerified
	}
	_, err = fmt.Fprintf(out, "Set %s verified: %s.\n", o.Set, res.How)
	return err
}

// syncEvents writes each Event before it returns: a command exits right
// after, which a broadcaster's queue would not outlive.
type syncEvents struct {
	client kubernetes.Interface
	scheme *runtime.Scheme
}

var _ events.EventRecorder = (*syncEvents)(nil)

// Eventf creates the Event, or says on stderr why it could not.
func (e *syncEvents) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	ref, err := reference.GetReference(e.scheme, regarding)
	if err != nil {
		fmt.Fprintf(os.Stderr, "snapgate: the %s Event was not recorded: %v\n", reason, err)
		return
	}
	now := time.Now()
	ev := &eventsv1.Event{
		// Named as client-go's recorder names Events.
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()), Namespace: ref.Namespace},
		EventTime:  metav1.NewMicroTime(now), Regarding: *ref, Type: eventtype, Reason: reason, Action: action,
		Note: fmt.Sprintf(note, args...), ReportingController: "snapgate.io/cli", ReportingInstance: "snapgate-cli",
	}
	if related != nil {
		if rel, err := reference.GetReference(e.scheme, related); err == nil {
			ev.Related = rel
		}
	}
	if _, err := e.client.EventsV1().Events(ref.Namespace).Create(context.Background(), ev, metav1.CreateOptions{}); err != nil {
		fmt.Fprintf(os.Stderr, "snapgate: the %s Event was not recorded: %v\n", reason, err)
	}
}
