package certs

import (
	"bytes"
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func pemCount(b []byte) int {
	n := 0
	for rest := b; ; n++ {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return n
		}
	}
}

func TestRotatorIssuesTrustsServesAndRenews(t *testing.T) {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	webhooks := []client.Object{
		&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "sg"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "a.snapgate.io"}, {Name: "b.snapgate.io"}}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "sg"},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "c.snapgate.io"}}},
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(webhooks...).Build()
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	r := &Rotator{
		Client: c, Namespace: "snapgate", Secret: "sg-tls", Webhooks: "sg", Settle: time.Millisecond, Log: logr.Discard(),
		Options: Options{Dir: dir, DNSNames: []string{"sg.snapgate.svc"}, Validity: 90 * time.Minute, Clock: clk},
	}
	ctx := context.Background()

	next, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next != time.Hour { // renewed with a third of the validity left
		t.Errorf("next renewal in %s, want 1h", next)
	}
	var secret corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: "snapgate", Name: "sg-tls"}, &secret); err != nil {
		t.Fatal(err)
	}
	first := secret.Data[CAFile]
	assertTrusted := func(bundle []byte) {
		t.Helper()
		var m admissionregistrationv1.MutatingWebhookConfiguration
		var v admissionregistrationv1.ValidatingWebhookConfiguration
		_ = c.Get(ctx, types.NamespacedName{Name: "sg"}, &m)
		_ = c.Get(ctx, types.NamespacedName{Name: "sg"}, &v)
		for _, cc := range []admissionregistrationv1.WebhookClientConfig{m.Webhooks[0].ClientConfig, m.Webhooks[1].ClientConfig, v.Webhooks[0].ClientConfig} {
			if !bytes.Equal(cc.CABundle, bundle) {
				t.Fatalf("caBundle holds %d certificates, not the secret's %d", pemCount(cc.CABundle), pemCount(bundle))
			}
		}
		served, _ := os.ReadFile(filepath.Join(dir, CertFile))
		if !bytes.Equal(served, secret.Data[CertFile]) {
			t.Fatal("the directory does not serve the secret's certificate")
		}
	}
	assertTrusted(first)

	// A second replica, or a second pass, changes nothing.
	rv := secret.ResourceVersion
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Get(ctx, types.NamespacedName{Namespace: "snapgate", Name: "sg-tls"}, &secret)
	if secret.ResourceVersion != rv {
		t.Error("a current certificate was issued again")
	}

	// Due for renewal: a new CA and certificate; the old CA stays trusted.
	clk.SetTime(clk.Now().Add(61 * time.Minute))
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Get(ctx, types.NamespacedName{Namespace: "snapgate", Name: "sg-tls"}, &secret)
	if pemCount(secret.Data[CAFile]) != 2 || !bytes.Contains(secret.Data[CAFile], first) {
		t.Fatalf("after renewal the bundle holds %d CAs; want the new and the old", pemCount(secret.Data[CAFile]))
	}
	assertTrusted(secret.Data[CAFile])
}
