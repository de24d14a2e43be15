package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestEnsureGeneratesReusesAndRenews(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(now)
	o := Options{Dir: dir, DNSNames: []string{"snapgate.snapgate-system.svc"}, IPs: []net.IP{net.ParseIP("127.0.0.1")},
		Validity: 90 * 24 * time.Hour, Clock: clk}

	ca, err := Ensure(o)
	if err != nil {
		t.Fatal(err)
	}
	// The pair loads as a TLS certificate and verifies against the returned CA for
	// both the DNS name and the IP the API server dials.
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	for _, name := range []string{"snapgate.snapgate-system.svc", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: now}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if info, _ := os.Stat(filepath.Join(dir, KeyFile)); info.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %v, want 0600", info.Mode().Perm())
	}

	again, err := Ensure(o)
	if err != nil || !SameCA(ca, again) {
		t.Fatalf("a valid certificate was replaced (err %v)", err)
	}

	// Two thirds into its life a certificate is renewed.
	clk.SetTime(clk.Now().Add(61 * 24 * time.Hour))
	renewed, err := Ensure(o)
	if err != nil || SameCA(ca, renewed) {
		t.Fatalf("a certificate due for renewal was kept (err %v)", err)
	}

	// A new name the API server must dial also forces a new certificate.
	o.DNSNames = append(o.DNSNames, "snapgate.other.svc")
	if widened, err := Ensure(o); err != nil || SameCA(renewed, widened) {
		t.Fatalf("a certificate that lacks a name was kept (err %v)", err)
	}
}

func TestExpiryMetricFollowsTheCertificateInTheDirectory(t *testing.T) {
	dir := t.TempDir()
	g := ExpiryMetric(dir)
	if v := testutil.ToFloat64(g); v != 0 {
		t.Fatalf("with no certificate: %v, want 0", v)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := Ensure(Options{Dir: dir, DNSNames: []string{"sg.snapgate.svc"}, Validity: 48 * time.Hour, Clock: clocktesting.NewFakePassiveClock(now)}); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if v := testutil.ToFloat64(g); v != float64(leaf.NotAfter.Unix()) {
		t.Fatalf("expiry %v, want the certificate's NotAfter %v", v, leaf.NotAfter.Unix())
	}
}
