package execbinder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/e2e/stack/hostpath"
)

// AnnotationExecDir is set on a pod once exec into it runs in that directory.
const AnnotationExecDir = "stack.snapgate.io/exec-dir"

// ExecGVK is kwok's per-pod exec rule.
var ExecGVK = schema.GroupVersionKind{Group: "kwok.x-k8s.io", Version: "v1alpha1", Kind: "Exec"}

// Binder reconciles pods into kwok Exec rules.
type Binder struct {
	Client client.Client
	// Driver is the CSI driver whose volumes are directories under Root.
	Driver string
	// Root is the hostpath driver's state directory.
	Root string
}

var _ reconcile.Reconciler = (*Binder)(nil)

// SetupWithManager registers the binder: pods, and the PVCs they wait for.
func (b *Binder) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&corev1.Pod{}).
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(b.podsOfClaim)).
		Complete(b)
}

// podsOfClaim maps a PVC to the pods of its namespace that mount it: a pod whose
// claim binds after the pod was seen needs another look.
func (b *Binder) podsOfClaim(ctx context.Context, obj client.Object) []reconcile.Request {
	var pods corev1.PodList
	if err := b.Client.List(ctx, &pods, client.InNamespace(obj.GetNamespace())); err != nil {
		log.FromContext(ctx).Error(err, "List pods for claim", "claim", obj.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for _, p := range pods.Items {
		if firstClaim(&p) == obj.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
		}
	}
	return reqs
}

func firstClaim(pod *corev1.Pod) string {
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			return v.PersistentVolumeClaim.ClaimName
		}
	}
	return ""
}

// Reconcile keeps the Exec of one pod, or removes it when the pod is gone.
func (b *Binder) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var pod corev1.Pod
	if err := b.Client.Get(ctx, req.NamespacedName, &pod); apierrors.IsNotFound(err) {
		return reconcile.Result{}, b.deleteExec(ctx, req.NamespacedName)
	} else if err != nil {
		return reconcile.Result{}, err
	}
	if pod.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	dir, ready, err := b.workDir(ctx, &pod)
	if err != nil || !ready {
		// Not ready: the claim is not bound yet, and its watch brings us back.
		return reconcile.Result{}, err
	}
	if err := b.applyExec(ctx, &pod, dir); err != nil {
		return reconcile.Result{}, err
	}
	if pod.Annotations[AnnotationExecDir] == dir {
		return reconcile.Result{}, nil
	}
	patch := client.MergeFrom(pod.DeepCopy())
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationExecDir] = dir
	if err := b.Client.Patch(ctx, &pod, patch); err != nil {
		return reconcile.Result{}, fmt.Errorf("annotate pod %s: %w", req, err)
	}
	log.FromContext(ctx).Info("Exec bound", "pod", req, "dir", dir)
	return reconcile.Result{}, nil
}

// workDir is the directory exec into the pod runs in: its first PVC's volume, or a
// scratch directory for a pod without one.
func (b *Binder) workDir(ctx context.Context, pod *corev1.Pod) (string, bool, error) {
	claim := firstClaim(pod)
	if claim == "" {
		dir := filepath.Join(b.Root, "pods", pod.Namespace, pod.Name)
		return dir, true, os.MkdirAll(dir, 0o777)
	}
	var pvc corev1.PersistentVolumeClaim
	if err := b.Client.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: claim}, &pvc); apierrors.IsNotFound(err) {
		return "", false, nil
	} else if err != nil {
		return "", false, err
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return "", false, nil
	}
	var pv corev1.PersistentVolume
	if err := b.Client.Get(ctx, types.NamespacedName{Name: pvc.Spec.VolumeName}, &pv); err != nil {
		return "", false, client.IgnoreNotFound(err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != b.Driver {
		return "", false, fmt.Errorf("pod %s/%s: volume %s is not a %s volume", pod.Namespace, pod.Name, pv.Name, b.Driver)
	}
	return hostpath.VolumeDir(b.Root, pv.Spec.CSI.VolumeHandle), true, nil
}

func (b *Binder) applyExec(ctx context.Context, pod *corev1.Pod, dir string) error {
	var execs []any
	for _, c := range pod.Spec.Containers {
		vars := map[string]string{"POD_NAME": pod.Name, "POD_NAMESPACE": pod.Namespace, "VOLUME_DIR": dir}
		envs := []any{
			map[string]any{"name": "POD_NAME", "value": pod.Name},
			map[string]any{"name": "POD_NAMESPACE", "value": pod.Namespace},
			map[string]any{"name": "VOLUME_DIR", "value": dir},
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				// $(VAR) refers to the variables above, as in a real pod's env.
				v := expand(e.Value, vars)
				vars[e.Name] = v
				envs = append(envs, map[string]any{"name": e.Name, "value": v})
			}
		}
		local := map[string]any{"workDir": dir, "envs": envs}
		// The command runs as the user the pod asks for (PostgreSQL refuses root).
		if sc := runAs(pod, &c); sc != nil {
			local["securityContext"] = sc
		}
		execs = append(execs, map[string]any{"containers": []any{c.Name}, "local": local})
	}
	exec := &unstructured.Unstructured{}
	exec.SetGroupVersionKind(ExecGVK)
	exec.SetNamespace(pod.Namespace)
	exec.SetName(pod.Name)
	exec.Object["spec"] = map[string]any{"execs": execs}
	// Server-side apply: one call creates or updates, whichever pod came before.
	if err := b.Client.Patch(ctx, exec, client.Apply, client.FieldOwner("execbinder"), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply exec rule for pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// expand replaces $(NAME) with the variable's value; an unknown one stays as is.
func expand(v string, vars map[string]string) string {
	for name, val := range vars {
		v = strings.ReplaceAll(v, "$("+name+")", val)
	}
	return v
}

// runAs is the user and group of a container, its own or its pod's.
func runAs(pod *corev1.Pod, c *corev1.Container) map[string]any {
	var uid, gid *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsUser != nil {
			uid = csc.RunAsUser
		}
		if csc.RunAsGroup != nil {
			gid = csc.RunAsGroup
		}
	}
	if uid == nil && gid == nil {
		return nil
	}
	sc := map[string]any{}
	if uid != nil {
		sc["runAsUser"] = *uid
	}
	if gid != nil {
		sc["runAsGroup"] = *gid
	}
	return sc
}

func (b *Binder) deleteExec(ctx context.Context, key types.NamespacedName) error {
	exec := &unstructured.Unstructured{}
	exec.SetGroupVersionKind(ExecGVK)
	exec.SetNamespace(key.Namespace)
	exec.SetName(key.Name)
	if err := b.Client.Delete(ctx, exec); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete exec rule of pod %s: %w", key, err)
	}
	return os.RemoveAll(filepath.Join(b.Root, "pods", key.Namespace, key.Name))
}
