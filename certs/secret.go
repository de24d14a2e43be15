package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// DefaultSettle is how long a replica waits between publishing a new CA in the
// webhook configurations and serving a certificate it signed: the API server
// picks the caBundle up from its own watch.
const DefaultSettle = 3 * time.Second

// Rotator keeps snapgate's serving certificate in a Secret, for clusters without
// cert-manager: every replica makes sure the Secret holds a current certificate
// for the Service's names (creating or renewing it, one writer winning by
// optimistic concurrency), that the webhook configurations trust its CA, and
// that its own certificate directory holds it, where controller-runtime's
// certificate watcher serves it without a restart. A renewed certificate comes
// with a new CA; the caBundle holds the new and the old CA until the old one
// expires, so a replica still serving the old certificate is trusted meanwhile.
type Rotator struct {
	// Client reads and writes the Secret and the webhook configurations.
	Client client.Client
	// Clientset watches the Secret.
	Clientset kubernetes.Interface
	// Namespace and Secret name the Secret.
	Namespace, Secret string
	// Options are the certificate's names, validity and directory.
	Options Options
	// Webhooks name the mutating and validating configurations to keep trusting
	// the CA (both share one name).
	Webhooks string
	// Settle is the wait between a new caBundle and serving; DefaultSettle when 0.
	Settle time.Duration
	// Log logs rotations.
	Log logr.Logger
	// Clock times the settle and the next look; the real clock when nil.
	Clock clock.Clock
}

func (r *Rotator) clock() clock.Clock {
	if r.Clock != nil {
		return r.Clock
	}
	return clock.RealClock{}
}

var _ manager.LeaderElectionRunnable = (*Rotator)(nil)

// NeedLeaderElection: every replica serves, so every replica keeps its files.
func (r *Rotator) NeedLeaderElection() bool { return false }

// Sync makes the Secret, the caBundles and the files current once, and returns
// when the certificate is next due for renewal.
func (r *Rotator) Sync(ctx context.Context) (time.Duration, error) {
	o := r.Options
	o.setDefaults()
	var secret corev1.Secret
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: r.Secret}, &secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("get secret %s/%s: %w", r.Namespace, r.Secret, err)
	}
	found := err == nil
	if !found || !currentIn(o, secret.Data) {
		if err := r.renew(ctx, o, &secret, found); err != nil {
			return 0, err
		}
	}
	bundleChanged, err := r.trust(ctx, secret.Data[CAFile])
	if err != nil {
		return 0, err
	}
	if filesDiffer(o.Dir, secret.Data) {
		// Only a swap needs the wait: with no certificate yet, nothing is served.
		if _, err := os.Stat(filepath.Join(o.Dir, CertFile)); bundleChanged && err == nil {
			settle := r.Settle
			if settle == 0 {
				settle = DefaultSettle
			}
			select {
			case <-r.clock().After(settle):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		if err := writeFiles(o.Dir, secret.Data); err != nil {
			return 0, err
		}
		r.Log.Info("Serving certificate from secret", "secret", r.Secret)
	}
	cert, err := parseCert(secret.Data[CertFile])
	if err != nil {
		return 0, fmt.Errorf("secret %s/%s: %s: %w", r.Namespace, r.Secret, CertFile, err)
	}
	return cert.NotAfter.Add(-o.RenewBefore).Sub(o.Clock.Now()), nil
}

// renew writes a new CA and certificate into the Secret; a conflict means
// another replica renewed first, and its Secret is read instead.
func (r *Rotator) renew(ctx context.Context, o Options, secret *corev1.Secret, found bool) error {
	caPEM, certPEM, keyPEM, err := generate(o)
	if err != nil {
		return err
	}
	bundle := append(caPEM, stillValid(secret.Data[CAFile], o.Clock.Now())...)
	data := map[string][]byte{CAFile: bundle, CertFile: certPEM, KeyFile: keyPEM}
	if !found {
		secret.ObjectMeta = metav1.ObjectMeta{Namespace: r.Namespace, Name: r.Secret, Labels: map[string]string{"app.kubernetes.io/managed-by": "snapgate"}}
		secret.Type = corev1.SecretTypeTLS
		secret.Data = data
		err = r.Client.Create(ctx, secret)
	} else {
		secret.Data = data
		err = r.Client.Update(ctx, secret)
	}
	if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
		return r.Client.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: r.Secret}, secret)
	}
	if err != nil {
		return fmt.Errorf("write secret %s/%s: %w", r.Namespace, r.Secret, err)
	}
	r.Log.Info("Issued a new serving certificate", "secret", r.Secret, "notAfter", o.Clock.Now().Add(o.Validity))
	return nil
}

// trust sets the caBundle of every webhook of both configurations.
func (r *Rotator) trust(ctx context.Context, bundle []byte) (bool, error) {
	changed := false
	for _, obj := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := r.Client.Get(ctx, types.NamespacedName{Name: r.Webhooks}, obj); err != nil {
				return fmt.Errorf("get %T %s: %w", obj, r.Webhooks, err)
			}
			if !setCABundle(obj, bundle) {
				return nil
			}
			changed = true
			return r.Client.Update(ctx, obj)
		})
		if err != nil {
			return false, err
		}
	}
	return changed, nil
}

// setCABundle sets the bundle on every webhook of a configuration and reports
// whether any had another.
func setCABundle(obj client.Object, bundle []byte) bool {
	var configs []*admissionregistrationv1.WebhookClientConfig
	switch o := obj.(type) {
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		for i := range o.Webhooks {
			configs = append(configs, &o.Webhooks[i].ClientConfig)
		}
	case *admissionregistrationv1.ValidatingWebhookConfiguration:
		for i := range o.Webhooks {
			configs = append(configs, &o.Webhooks[i].ClientConfig)
		}
	}
	stale := false
	for _, cc := range configs {
		stale = stale || !bytes.Equal(cc.CABundle, bundle)
		cc.CABundle = bundle
	}
	return stale
}

// Start keeps the certificate current: on every change of the Secret (another
// replica renewed it, or someone deleted it) and when it is due.
func (r *Rotator) Start(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	notify := func(any) {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	lw := toolscache.NewListWatchFromClient(r.Clientset.CoreV1().RESTClient(), "secrets", r.Namespace, fields.OneTermEqualSelector("metadata.name", r.Secret))
	inf := toolscache.NewSharedInformer(lw, &corev1.Secret{}, 0)
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: notify, UpdateFunc: func(_, o any) { notify(o) }, DeleteFunc: notify,
	}); err != nil {
		return err
	}
	go inf.RunWithContext(ctx)
	for {
		next, err := r.Sync(ctx)
		if err != nil {
			r.Log.Error(err, "Keep serving certificate current; retrying")
			next = 5 * time.Second
		}
		timer := r.clock().NewTimer(max(next, time.Second))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-wake:
		case <-timer.C():
		}
		timer.Stop()
	}
}

// currentIn reports whether a Secret's data holds a certificate for the names,
// not due for renewal, signed by the first CA of its bundle.
func currentIn(o Options, data map[string][]byte) bool {
	cert, err := parseCert(data[CertFile])
	if err != nil || o.Clock.Now().Add(o.RenewBefore).After(cert.NotAfter) {
		return false
	}
	for _, n := range o.DNSNames {
		if !slices.Contains(cert.DNSNames, n) {
			return false
		}
	}
	for _, ip := range o.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	ca, err := parseCert(data[CAFile])
	return err == nil && cert.CheckSignatureFrom(ca) == nil && len(data[KeyFile]) > 0
}

// stillValid keeps the CAs of a bundle that have not expired, in PEM.
func stillValid(bundle []byte, now time.Time) []byte {
	var out []byte
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return out
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil && now.Before(c.NotAfter) {
			out = append(out, pem.EncodeToMemory(block)...)
		}
	}
}

func filesDiffer(dir string, data map[string][]byte) bool {
	for _, name := range []string{CertFile, KeyFile, CAFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(b, data[name]) {
			return true
		}
	}
	return false
}

func writeFiles(dir string, data map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	// Key before certificate: the watcher reloads on either, and a pair that
	// does not match is refused, not served.
	var errs []error
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{KeyFile, 0o600}, {CertFile, 0o644}, {CAFile, 0o644}} {
		errs = append(errs, writeAtomic(filepath.Join(dir, f.name), data[f.name], f.mode))
	}
	return errors.Join(errs...)
}
