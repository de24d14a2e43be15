//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
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

// TestBuiltinCertificatesRotateWithoutLosingARequest installs the chart with
// certs.mode=builtin for real (Helm, into the stack), its webhook
// configurations pointing by URL at a snapgate run here as the release's pod
// would run it. snapgate issues its certificate into the release's Secret and
// its CA into the configurations; a guarded upgrade goes through them. Then,
// with a certificate that lives 45 s, a stream of guarded and pass-through
// updates runs across a renewal, and not one request fails.
func TestBuiltinCertificatesRotateWithoutLosingARequest(t *testing.T) {
	c := framework.Connect(t)
	// The snapgate of `make run` steps aside, so every guarded request goes
	// through the release's configurations; it comes back afterwards.
	if r := c.Run(t, "", filepath.Join(framework.RepoRoot(), "e2e", "stack", "snapgate.sh"), "down"); r.Err != nil {
		t.Fatalf("snapgate.sh down: %v\n%s", r.Err, r.Stderr)
	}
	t.Cleanup(func() { c.StartSnapgate(t) })

	release := c.Namespace(t)
	helm := func(args ...string) framework.Result {
		return c.Run(t, "", c.Bin("helm"), append(args, "--namespace", release, "--kubeconfig", c.Kubeconfig)...)
	}
	const port = 19453
	if r := helm("install", "sg", chartDir(), "--set", "certs.mode=builtin", "--set", fmt.Sprintf("webhook.url=https://127.0.0.1:%d", port),
		"--set", "replicaCount=1", "--set", "webhook.budget=8s"); r.Err != nil {
		t.Fatalf("helm install: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	// Uninstalling removes the webhook configurations, or they would block
	// every guarded StatefulSet after the test.
	t.Cleanup(func() { helm("uninstall", "sg", "--wait") })

	logPath := filepath.Join(t.TempDir(), "snapgate.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.Bin("snapgate"), "serve", "--kubeconfig", c.Kubeconfig, "--namespace", release,
		"--cert-secret", "sg-snapgate-tls", "--webhook-configuration", "sg-snapgate", "--service-name", "sg-snapgate",
		"--webhook-host", "127.0.0.1", "--webhook-port", fmt.Sprint(port), "--cert-dir", t.TempDir(),
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--leader-elect=false", "--budget", "8s",
		"--cert-validity", "45s")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("snapgate's log:\n%s", lastLines(string(b), 40))
		}
	})

	secret := func() corev1.Secret {
		var s corev1.Secret
		_ = c.Ctrl.Get(context.Background(), client.ObjectKey{Namespace: release, Name: "sg-snapgate-tls"}, &s)
		return s
	}
	bundles := func() [][]byte {
		var m admissionregistrationv1.MutatingWebhookConfiguration
		var v admissionregistrationv1.ValidatingWebhookConfiguration
		_ = c.Ctrl.Get(context.Background(), client.ObjectKey{Name: "sg-snapgate"}, &m)
		_ = c.Ctrl.Get(context.Background(), client.ObjectKey{Name: "sg-snapgate"}, &v)
		var out [][]byte
		for _, w := range m.Webhooks {
			out = append(out, w.ClientConfig.CABundle)
		}
		for _, w := range v.Webhooks {
			out = append(out, w.ClientConfig.CABundle)
		}
		return out
	}
	trusted := func() bool {
		ca := secret().Data["ca.crt"]
		bs := bundles()
		for _, b := range bs {
			if len(ca) == 0 || !bytes.Equal(b, ca) {
				return false
			}
		}
		return len(bs) == 5
	}
	waitFor(t, 30*time.Second, trusted, "certificate issued into the Secret and its CA in all five webhooks")
	waitFor(t, 30*time.Second, func() bool {
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, "snapgate serving")

	ns := c.Namespace(t)
	newGuarded(t, c, ns, "db", 1, nil)
	newGuarded(t, c, ns, "passthrough", 1, map[string]string{"snapgate.io/on": "delete"})
	if r := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17"); r.Err != nil || !strings.Contains(r.Stderr, "snapgate: took snapshot set db-") {
		t.Fatalf("a guarded upgrade through the built-in certificate: %v\n%s", r.Err, r.Stderr)
	}

	// The stream runs until snapgate has served the renewed certificate for a
	// while: across the renewal, the new caBundle and the reload.
	served := func() []byte {
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("dial snapgate: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	first := served()
	deadline := time.Now().Add(90 * time.Second)
	var guarded, passed, afterSwap int
	for i := 0; afterSwap < 10; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("snapgate did not serve a renewed certificate within 90s of a 45s validity (%d guarded, %d pass-through requests)", guarded, passed)
		}
		sts, kind := "passthrough", &passed
		if i%3 == 0 {
			sts, kind = "db", &guarded
		}
		if r := c.Kubectl(t, "-n", ns, "set", "env", "statefulset/"+sts, fmt.Sprintf("ROUND=%d", i)); r.Err != nil {
			t.Fatalf("request %d (%s) failed: %v\n%s", i, sts, r.Err, r.Stderr)
		}
		*kind++
		if !bytes.Equal(served(), first) {
			afterSwap++
		}
	}
	s := secret()
	if n := bytes.Count(s.Data["ca.crt"], []byte("BEGIN CERTIFICATE")); n != 2 || !trusted() {
		t.Errorf("after the renewal the Secret's bundle holds %d CAs (want the new and the old), all webhooks trust it: %v", n, trusted())
	}
	// What is served now is the Secret's renewed certificate, reloaded without a restart.
	if block, _ := pem.Decode(s.Data["tls.crt"]); block == nil || !bytes.Equal(served(), block.Bytes) {
		t.Error("snapgate does not serve the Secret's certificate")
	}
	t.Logf("%d guarded and %d pass-through requests across a certificate renewal, none failed", guarded, passed)
}
