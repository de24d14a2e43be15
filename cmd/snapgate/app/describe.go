package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/snapshotter"
)

// DescribeOptions configure `snapgate describe set`.
type DescribeOptions struct {
	Kube  *genericclioptions.ConfigFlags
	Set   string
	Clock clock.PassiveClock
}

func newDescribeCommand() *cobra.Command {
	o := &DescribeOptions{Kube: genericclioptions.NewConfigFlags(true), Clock: clock.RealClock{}}
	cmd := &cobra.Command{
		Use:   "describe set NAME",
		Short: "Show what a snapshot set holds and what a rollback to it restores",
		Example: `  snapgate describe set postgres-3f2a9c1d -n db
  kubectl snapgate describe set/postgres-3f2a9c1d`,
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := setArg(args)
			if err != nil {
				return err
			}
			o.Set = set
			return o.Run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.Kube.AddFlags(cmd.Flags())
	return cmd
}

// setArg reads a snapshot set's name, given as set NAME or set/NAME.
func setArg(args []string) (string, error) {
	if len(args) == 1 {
		args = strings.SplitN(args[0], "/", 2)
	}
	if len(args) != 2 || args[0] != "set" || args[1] == "" {
		return "", errors.New("name one snapshot set, as set NAME (see `snapgate list sts/NAME`)")
	}
	return args[1], nil
}

// Run prints the set.
func (o *DescribeOptions) Run(ctx context.Context, out io.Writer) error {
	_, ns, c, err := connect(o.Kube)
	if err != nil {
		return err
	}
	var list snapv1.VolumeSnapshotList
	if err := c.List(ctx, &list, client.InNamespace(ns),
		client.MatchingLabels{snapshotter.LabelSet: o.Set, snapshotter.LabelManagedBy: snapshotter.ManagedBy}); err != nil {
		return fmt.Errorf("list snapshots of set %s: %w", o.Set, err)
	}
	if len(list.Items) == 0 {
		return fmt.Errorf("namespace %s has no snapshot set %s; `snapgate list sts/NAME` shows a StatefulSet's sets", ns, o.Set)
	}
	return o.print(out, ns, list.Items)
}

func (o *DescribeOptions) print(out io.Writer, ns string, snaps []snapv1.VolumeSnapshot) error {
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Name < snaps[j].Name })
	first := &snaps[0]
	ann := first.Annotations
	sts := snapshotter.StatefulSetName(first)
	created, ready := snapshotter.TakenAt(first), 0
	for i := range snaps {
		s := &snaps[i]
		if t := snapshotter.TakenAt(s); t.Before(created) {
			created = t
		}
		if s.Status != nil && s.Status.ReadyToUse != nil && *s.Status.ReadyToUse {
			ready++
		}
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Set:\t%s\n", o.Set)
	fmt.Fprintf(w, "StatefulSet:\t%s/%s (generation %s)\n", ns, sts, ann[snapshotter.AnnotationGeneration])
	fmt.Fprintf(w, "Reason:\t%s\n", ann[snapshotter.AnnotationReason])
	fmt.Fprintf(w, "Taken:\t%s (%s ago)\n", created.UTC().Format(time.RFC3339), duration.HumanDuration(o.Clock.Now().Sub(created)))
	fmt.Fprintf(w, "Requested by:\t%s\n", ann[snapshotter.AnnotationRequestedBy])
	fmt.Fprintf(w, "Replicas:\t%s before the change, %s after\n", ann[snapshotter.AnnotationReplicasBefore], ann[snapshotter.AnnotationReplicasAfter])
	fmt.Fprintf(w, "Ready:\t%d/%d\n", ready, len(snaps))
	var tmpl corev1.PodTemplateSpec
	if recorded, _, err := snapshotter.RecordedTemplate(o.Set, snaps); err != nil {
		fmt.Fprintf(w, "Pod template:\t%v\n", err)
	} else if err := json.Unmarshal([]byte(recorded), &tmpl); err == nil {
		var images []string
		for _, c := range tmpl.Spec.Containers {
			images = append(images, c.Name+"="+c.Image)
		}
		fmt.Fprintf(w, "Pod template:\t%s (revision %s)\n", strings.Join(images, ", "), ann[snapshotter.AnnotationRevision])
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "Snapshots:")
	w = tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "  SNAPSHOT\tPVC\tREPLICA\tREADY\tSIZE\tCONTENT")
	for _, s := range snaps {
		pvc, isReady, size, content := "", "false", "-", "-"
		if src := s.Spec.Source.PersistentVolumeClaimName; src != nil {
			pvc = *src
		}
		if st := s.Status; st != nil {
			if st.ReadyToUse != nil && *st.ReadyToUse {
				isReady = "true"
			} else if st.Error != nil && st.Error.Message != nil {
				isReady = "failed: " + *st.Error.Message
			}
			if st.RestoreSize != nil {
				size = humanSize(st.RestoreSize.Value())
			}
			if st.BoundVolumeSnapshotContentName != nil {
				content = *st.BoundVolumeSnapshotContentName
			}
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.Name, pvc, s.Labels[snapshotter.LabelOrdinal], isReady, size, content)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "Roll back to it: kubectl snapgate rollback sts/%s -n %s --to %s --wait\n", sts, ns, o.Set)
	return err
}
