//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/e2e/framework"
)

// release is the chart installed with Helm for one test, its snapgate
// running as the chart's own pods on the real node (installChart). The
// snapgate of `make run` steps aside meanwhile, so that every guarded request
// goes through the release's configurations.
type release struct {
	c         *framework.Cluster
	namespace string
}

// stepAside stops the snapgate of `make run` until the test ends.
func stepAside(t *testing.T, c *framework.Cluster) {
	t.Helper()
	c.StopSnapgate(t)
	t.Cleanup(func() { c.StartSnapgate(t) })
}

// helmInstall installs the chart as release sg in the release's namespace,
// and uninstalls it when the test ends: its webhook configurations would
// otherwise block every guarded StatefulSet after the test.
func (r *release) helmInstall(t *testing.T, args ...string) {
	t.Helper()
	args = append([]string{"install", "sg", chartDir(), "--namespace", r.namespace, "--kubeconfig", r.c.Kubeconfig}, args...)
	if res := r.c.Run(t, "", r.c.Bin("helm"), args...); res.Err != nil {
		t.Fatalf("helm install: %v\n%s%s", res.Err, res.Stdout, res.Stderr)
	}
	t.Cleanup(func() {
		r.c.Run(t, "", r.c.Bin("helm"), "uninstall", "sg", "--wait", "--namespace", r.namespace, "--kubeconfig", r.c.Kubeconfig)
	})
}

// installChart installs the chart as a user does, with helm install --wait and
// these values (`--set` each): its snapgate runs from its image (make image)
// in the chart's pods on the real node, the API server calls it through its
// Service, and it reaches the API server as any pod does, as the chart's
// ServiceAccount with exactly the chart's RBAC. When the test ends, the pods'
// logs must show no request of snapgate's refused by RBAC.
func installChart(t *testing.T, c *framework.Cluster, set ...string) *release {
	t.Helper()
	stepAside(t, c)
	rel := &release{c: c, namespace: c.Namespace(t)}
	args := []string{"--wait", "--timeout", "3m"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	rel.helmInstall(t, args...)
	t.Cleanup(func() {
		logs := c.Kubectl(t, "-n", rel.namespace, "logs", "-l", "app.kubernetes.io/instance=sg", "--prefix", "--tail=-1").Stdout
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "is forbidden: User") {
				t.Errorf("snapgate was refused something the chart should grant:\n%s", line)
			}
		}
		if t.Failed() {
			t.Logf("the chart's pods' logs:\n%s", lastLines(logs, 40))
		}
	})
	return rel
}

// start runs a process until the test ends, and shows the end of its log if
// the test failed. It returns the log's path.
func start(t *testing.T, name string, args ...string) string {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(name)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s's log:\n%s", filepath.Base(name), lastLines(string(b), 30))
		}
	})
	return logPath
}

// served is the certificate snapgate answers with: the first of the chart's
// pods', at its address on the pod network.
func (r *release) served(t *testing.T) []byte {
	t.Helper()
	ip := r.c.MustKubectl(t, "-n", r.namespace, "get", "pods", "-l", "app.kubernetes.io/instance=sg",
		"--field-selector=status.phase=Running", "-o", "jsonpath={.items[0].status.podIP}")
	conn, err := tls.Dial("tcp", ip+":9443", &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("dial snapgate: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw
}

func (r *release) secret() corev1.Secret {
	var s corev1.Secret
	_ = r.c.Ctrl.Get(context.Background(), client.ObjectKey{Namespace: r.namespace, Name: "sg-snapgate-tls"}, &s)
	return s
}

// trusted reports whether all five webhooks carry the Secret's CA bundle.
func (r *release) trusted() bool {
	ca := r.secret().Data["ca.crt"]
	var m admissionregistrationv1.MutatingWebhookConfiguration
	var v admissionregistrationv1.ValidatingWebhookConfiguration
	_ = r.c.Ctrl.Get(context.Background(), client.ObjectKey{Name: "sg-snapgate"}, &m)
	_ = r.c.Ctrl.Get(context.Background(), client.ObjectKey{Name: "sg-snapgate"}, &v)
	var bundles [][]byte
	for _, w := range m.Webhooks {
		bundles = append(bundles, w.ClientConfig.CABundle)
	}
	for _, w := range v.Webhooks {
		bundles = append(bundles, w.ClientConfig.CABundle)
	}
	for _, b := range bundles {
		if len(ca) == 0 || !bytes.Equal(b, ca) {
			return false
		}
	}
	return len(bundles) == 5
}

// upgradeAndStream checks a guarded upgrade through the release's webhooks,
// then runs guarded and pass-through updates, calling renew once, until
// snapgate has served a renewed certificate for ten more requests. Every
// request must succeed.
func (r *release) upgradeAndStream(t *testing.T, renew func()) {
	t.Helper()
	c := r.c
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 1, nil)
	newGuarded(t, c, ns, "passthrough", 1, map[string]string{"snapgate.io/on": "delete"})
	if res := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17"); res.Err != nil || !strings.Contains(res.Stderr, "snapgate: took snapshot set db-") {
		t.Fatalf("a guarded upgrade through the release's webhooks: %v\n%s", res.Err, res.Stderr)
	}
	first := r.served(t)
	deadline := time.Now().Add(90 * time.Second)
	var guarded, passed, afterSwap int
	for i := 0; afterSwap < 10; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("snapgate served no renewed certificate within 90s (%d guarded, %d pass-through requests)", guarded, passed)
		}
		if i == 3 && renew != nil {
			renew()
		}
		sts, kind := "passthrough", &passed
		if i%3 == 0 {
			sts, kind = "db", &guarded
		}
		if res := c.Kubectl(t, "-n", ns, "set", "env", "statefulset/"+sts, fmt.Sprintf("ROUND=%d", i)); res.Err != nil {
			t.Fatalf("request %d (%s) failed: %v\n%s", i, sts, res.Err, res.Stderr)
		}
		*kind++
		if !bytes.Equal(r.served(t), first) {
			afterSwap++
		}
	}
	// What is served now is the Secret's renewed certificate, reloaded without a restart.
	if block, _ := pem.Decode(r.secret().Data["tls.crt"]); block == nil || !bytes.Equal(r.served(t), block.Bytes) {
		t.Error("snapgate does not serve the Secret's certificate")
	}
	t.Logf("%d guarded and %d pass-through requests across a certificate renewal, none failed", guarded, passed)
}

// TestBuiltinCertificatesRotateWithoutLosingARequest: certs.mode=builtin.
// The chart's two pods issue its certificate into the release's Secret and
// its CA into the configurations; with a certificate that lives 45 s,
// updates run across its renewal.
func TestBuiltinCertificatesRotateWithoutLosingARequest(t *testing.T) {
	c := framework.Connect(t)
	rel := installChart(t, c, "certs.mode=builtin", "certs.builtin.validity=45s")
	waitFor(t, 30*time.Second, rel.trusted, "certificate issued into the Secret and its CA in all five webhooks")

	rel.upgradeAndStream(t, nil)
	if n := bytes.Count(rel.secret().Data["ca.crt"], []byte("BEGIN CERTIFICATE")); n != 2 || !rel.trusted() {
		t.Errorf("after the renewal the Secret's bundle holds %d CAs (want the new and the old), all webhooks trust it: %v", n, rel.trusted())
	}
}

// TestCertManagerIssuesInjectsAndRotates: the chart as a user installs it,
// with the real cert-manager controllers and cainjector (built from the
// cert-manager module). The chart's Issuers and Certificates issue the serving
// certificate, cainjector fills all five caBundles, the chart's pods start on
// the real node with the Secret as their volume and become Ready, and the API
// server calls them through their Service. A renewal (as `cmctl renew` asks
// for one) under a stream of updates loses no request: the kubelet updates the
// pods' volume and snapgate serves the new certificate without a restart.
func TestCertManagerIssuesInjectsAndRotates(t *testing.T) {
	c := framework.Connect(t)
	rel := installChartWithCertManager(t, c)

	before := rel.secret().Data["tls.crt"]
	rel.upgradeAndStream(t, func() {
		status, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []map[string]string{{
			"type": "Issuing", "status": "True", "reason": "ManuallyTriggered", "message": "renewal asked by the e2e test",
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}}}})
		c.MustKubectl(t, "-n", rel.namespace, "patch", "certificate", "sg-snapgate", "--subresource=status", "--type=merge", "-p", string(status))
	})
	if bytes.Equal(rel.secret().Data["tls.crt"], before) {
		t.Error("cert-manager did not renew the certificate")
	}
	if !rel.trusted() {
		t.Error("after the renewal the webhooks do not carry the CA")
	}
	rel.leader(t)
}

// installChartWithCertManager runs cert-manager's controllers and cainjector
// (built from the cert-manager module), installs the chart as a user does
// (installChart), and waits until cert-manager has issued its certificate,
// cainjector has filled all five caBundles and both of its pods are Ready.
func installChartWithCertManager(t *testing.T, c *framework.Cluster) *release {
	t.Helper()
	installCertManagerCRDs(t, c)
	start(t, c.Bin("certmanager"), "--kubeconfig", c.Kubeconfig)
	rel := installChart(t, c)
	c.MustKubectl(t, "-n", rel.namespace, "wait", "--for=condition=Ready", "certificate/sg-snapgate", "--timeout=60s")
	waitFor(t, 30*time.Second, rel.trusted, "cainjector's caBundle in all five webhooks")
	if got := c.MustKubectl(t, "-n", rel.namespace, "get", "deployment", "sg-snapgate", "-o", "jsonpath={.status.readyReplicas}"); got != "2" {
		t.Fatalf("ready replicas of the chart's Deployment: %q, want 2", got)
	}
	return rel
}

// leader waits until one of the chart's pods holds the controllers' Lease,
// and returns the holder's identity ("<pod>_<uuid>", controller-runtime's).
func (r *release) leader(t *testing.T) string {
	t.Helper()
	var holder string
	framework.Eventually(t, 30*time.Second, "a pod of the chart leading", func() error {
		holder = r.c.Kubectl(t, "-n", r.namespace, "get", "lease", "snapgate-controllers", "-o", "jsonpath={.spec.holderIdentity}").Stdout
		if !strings.HasPrefix(holder, "sg-snapgate-") || !strings.Contains(holder, "_") {
			return fmt.Errorf("the Lease snapgate-controllers is held by %q", holder)
		}
		return nil
	})
	return holder
}

// installCertManagerCRDs installs cert-manager's CRDs from its module.
func installCertManagerCRDs(t *testing.T, c *framework.Cluster) {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/cert-manager/cert-manager@v1.21.2").Output()
	if err != nil {
		t.Fatalf("download the cert-manager module (for its CRDs): %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v %s", err, out)
	}
	crds, _ := filepath.Glob(filepath.Join(mod.Dir, "deploy", "crds", "cert-manager.io_*.yaml"))
	if len(crds) == 0 {
		t.Fatalf("no cert-manager CRDs under %s/deploy/crds", mod.Dir)
	}
	for _, crd := range crds {
		c.MustKubectl(t, "apply", "--server-side", "-f", crd)
	}
	c.MustKubectl(t, "wait", "--for=condition=Established", "crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io",
		"crd/certificaterequests.cert-manager.io", "--timeout=30s")
}

// snapgate's webhook refuses a client that offers nothing newer than TLS 1.1,
// with the handshake's protocol-version alert; 1.2 and 1.3 are served (the API
// server offers both).
func TestTLSOlderThan12IsRefused(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	for _, tc := range []struct {
		name   string
		max    uint16
		served bool
	}{{"TLS 1.0", tls.VersionTLS10, false}, {"TLS 1.1", tls.VersionTLS11, false}, {"TLS 1.2", tls.VersionTLS12, true}, {"TLS 1.3", tls.VersionTLS13, true}} {
		conn, err := tls.Dial("tcp", c.WebhookAddr(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tc.max})
		switch {
		case tc.served && err != nil:
			t.Errorf("%s: %v; want it served", tc.name, err)
		case !tc.served && err == nil:
			t.Errorf("%s: served (%s); want it refused", tc.name, tls.VersionName(conn.ConnectionState().Version))
		case !tc.served && !strings.Contains(err.Error(), "protocol version"):
			t.Errorf("%s: %v; want the server's protocol version alert", tc.name, err)
		}
		if conn != nil {
			conn.Close()
		}
	}
}
