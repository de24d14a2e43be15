package framework

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Cluster is the running local stack, as a test sees it.
type Cluster struct {
	// Dir is the stack's state directory (.cluster at the repository root).
	Dir string
	// Kubeconfig is the admin kubeconfig path.
	Kubeconfig string
	// Config and Client talk to the apiserver as admin; Ctrl knows snapshots too.
	Config *rest.Config
	Client kubernetes.Interface
	Ctrl   client.WithWatch
}

// RepoRoot is the repository root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Connect returns the running stack or fails the test with the command that
// starts it. It never starts the stack itself: building it takes minutes, and a
// test must not pay for that.
func Connect(t testing.TB) *Cluster {
	t.Helper()
	dir := os.Getenv("SNAPGATE_CLUSTER_DIR")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), ".cluster")
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if _, err := os.Stat(kubeconfig); err != nil {
		t.Fatalf("no local cluster at %s (%v): run `make cluster` first, or `make e2e`", dir, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("load %s: %v", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	// The tests' own clients log nothing worth reading.
	ctrllog.SetLogger(logr.Discard())
	scheme := k8sruntime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = snapv1.AddToScheme(scheme)
	_ = groupv1.AddToScheme(scheme)
	ctrl, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("client for %s: %v", kubeconfig, err)
	}
	return &Cluster{Dir: dir, Kubeconfig: kubeconfig, Config: cfg, Client: kubernetes.NewForConfigOrDie(cfg), Ctrl: ctrl}
}

// Bin is the path of a stack binary, such as "kubectl" or "helm".
func (c *Cluster) Bin(name string) string { return filepath.Join(c.Dir, "bin", name) }

// Namespace creates a namespace for one test and deletes it when the test ends.
// Its pods go where a user's would: the real node, as real containers.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	return c.namespace(t, nil)
}

// KwokNamespace is Namespace whose pods go to kwok's nodes, where containers
// are simulated: cheap, for the tests whose subject is the API (admission,
// controllers, the chart's objects) and not what runs in a pod. The namespace
// says so (its default node selector and tolerations), so the tests' manifests
// stay as a user writes them.
func (c *Cluster) KwokNamespace(t testing.TB) string {
	t.Helper()
	return c.namespace(t, map[string]string{
		"scheduler.alpha.kubernetes.io/node-selector":      "type=kwok",
		"scheduler.alpha.kubernetes.io/defaultTolerations": `[{"key":"kwok.x-k8s.io/node","operator":"Exists","effect":"NoSchedule"}]`,
	})
}

func (c *Cluster) namespace(t testing.TB, annotations map[string]string) string {
	t.Helper()
	name := "e2e-" + rand.String(6)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
	if _, err := c.Client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			// Leave what failed to look at; `make cluster-down` removes it.
			t.Logf("namespace %s kept for inspection", name)
			return
		}
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// Result is what a command printed and how it ended.
type Result struct {
	Stdout, Stderr string
	Err            error
}

// Kubectl runs the real kubectl against the stack, with a timeout, and returns
// what it printed.
func (c *Cluster) Kubectl(t testing.TB, args ...string) Result {
	t.Helper()
	return c.Run(t, "", c.Bin("kubectl"), args...)
}

// MustKubectl is Kubectl that fails the test when kubectl fails.
func (c *Cluster) MustKubectl(t testing.TB, args ...string) string {
	t.Helper()
	r := c.Kubectl(t, args...)
	if r.Err != nil {
		t.Fatalf("kubectl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// Apply pipes a manifest into `kubectl apply -f -` in namespace ns.
func (c *Cluster) Apply(t testing.TB, ns, manifest string) {
	t.Helper()
	r := c.Run(t, manifest, c.Bin("kubectl"), "apply", "-n", ns, "-f", "-")
	if r.Err != nil {
		t.Fatalf("kubectl apply: %v\n%s\n%s", r.Err, r.Stderr, manifest)
	}
}

// Run runs a command with KUBECONFIG set to the stack's, stdin as given, bounded
// to two minutes.
func (c *Cluster) Run(t testing.TB, stdin, name string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out: %w", filepath.Base(name), ctx.Err())
	}
	return Result{Stdout: out.String(), Stderr: errOut.String(), Err: err}
}
