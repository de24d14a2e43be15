package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// File names in the certificate directory, as controller-runtime's webhook
// server expects them.
const (
	CAFile   = "ca.crt"
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// Options describe the serving certificate.
type Options struct {
	// Dir holds ca.crt, tls.crt and tls.key.
	Dir string
	// DNSNames and IPs are the names the API server dials.
	DNSNames []string
	IPs      []net.IP
	// Validity of the serving certificate; the CA lives ten times as long.
	Validity time.Duration
	// RenewBefore: a certificate closer than this to expiry is replaced.
	RenewBefore time.Duration
	// Clock tells the time; the real clock when nil.
	Clock clock.PassiveClock
}

func (o *Options) setDefaults() {
	if o.Validity == 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if o.RenewBefore == 0 {
		o.RenewBefore = o.Validity / 3
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
}

// Ensure makes sure Dir holds a CA and a serving certificate for the options'
// names that is not due for renewal, generating them if not, and returns the CA
// in PEM for the webhook configurations' caBundle.
func Ensure(o Options) ([]byte, error) {
	o.setDefaults()
	if ca, ok := current(o); ok {
		return ca, nil
	}
	caPEM, certPEM, keyPEM, err := generate(o)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create certificate directory: %w", err)
	}
	// The key and certificate are written before the CA that callers publish,
	// each by rename, so a reader never sees half a file.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{KeyFile, keyPEM, 0o600}, {CertFile, certPEM, 0o644}, {CAFile, caPEM, 0o644}} {
		if err := writeAtomic(filepath.Join(o.Dir, f.name), f.data, f.mode); err != nil {
			return nil, err
		}
	}
	return caPEM, nil
}

// current returns the CA if the directory's certificate is valid for the names
// and not due for renewal.
func current(o Options) ([]byte, bool) {
	data := map[string][]byte{}
	for _, name := range []string{CAFile, CertFile, KeyFile} {
		b, err := os.ReadFile(filepath.Join(o.Dir, name))
		if err != nil {
			return nil, false
		}
		data[name] = b
	}
	return data[CAFile], currentIn(o, data)
}

func parseCert(p []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(p)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func generate(o Options) (caPEM, certPEM, keyPEM []byte, err error) {
	now := o.Clock.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "snapgate-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * o.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate serving key: %w", err)
	}
	cn := "snapgate"
	if len(o.DNSNames) > 0 {
		cn = o.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(o.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("encode serving key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Register creates or updates the webhook configurations (server-side apply, as
// field manager "snapgate"), each already carrying its caBundle.
func Register(ctx context.Context, c client.Client, objs ...client.Object) error {
	for _, obj := range objs {
		obj.SetManagedFields(nil)
		if err := c.Patch(ctx, obj, client.Apply, client.FieldOwner("snapgate"), client.ForceOwnership); err != nil {
			return fmt.Errorf("register %s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
	}
	return nil
}

// Unregister deletes the webhook configurations, so that a stopped local
// snapgate leaves nothing behind that would block guarded StatefulSets.
func Unregister(ctx context.Context, c client.Client, objs ...client.Object) error {
	var errs []error
	for _, obj := range objs {
		if err := c.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("unregister %s: %w", obj.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

// SameCA reports whether two PEM bundles hold the same certificates.
func SameCA(a, b []byte) bool { return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b)) }

// ExpiryMetric is a gauge of when the serving certificate in dir expires
// (snapgate_serving_certificate_expiry_timestamp_seconds), read from the file
// at each scrape, so it follows every rotation; 0 while there is none to read.
func ExpiryMetric(dir string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "snapgate_serving_certificate_expiry_timestamp_seconds",
		Help: "When the webhook's serving certificate expires, in seconds since the epoch (0: none can be read).",
	}, func() float64 {
		b, err := os.ReadFile(filepath.Join(dir, CertFile))
		if err != nil {
			return 0
		}
		cert, err := parseCert(b)
		if err != nil {
			return 0
		}
		return float64(cert.NotAfter.Unix())
	})
}
