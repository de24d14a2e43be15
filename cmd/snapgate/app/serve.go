package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/snapgate/snapgate/certs"
	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/follow"
	"github.com/snapgate/snapgate/snapshotter/hooks"
	"github.com/snapgate/snapgate/snapshotter/policy"
	"github.com/snapgate/snapgate/snapshotter/prune"
	"github.com/snapgate/snapgate/snapshotter/record"
	"github.com/snapgate/snapgate/snapshotter/rollback"
	"github.com/snapgate/snapgate/snapshotter/schedule"
	"github.com/snapgate/snapgate/snapshotter/verify"
	snapwebhook "github.com/snapgate/snapgate/webhook"
)

// ServeOptions configure `snapgate serve`.
type ServeOptions struct {
	// Kubeconfig is the path of a kubeconfig; empty means in-cluster.
	Kubeconfig string
	// Namespace is snapgate's own namespace: never guarded, and home of its
	// leader-election lease.
	Namespace string
	// Namespaces, when set, are the only namespaces snapgate guards (a
	// namespaced install): its caches watch only them, and the webhooks it
	// registers match only them.
	Namespaces []string
	// WebhookHost and WebhookPort are where the webhook server listens.
	WebhookHost string
	WebhookPort int
	// CertDir holds tls.crt and tls.key (and ca.crt in self-signed mode).
	CertDir string
	// SelfSigned generates a CA and serving certificate into CertDir.
	SelfSigned bool
	// CertSecret, when set, keeps the serving certificate in this Secret of
	// Namespace, renews it, and keeps the caBundle of WebhookConfiguration
	// current (built-in certificates, for clusters without cert-manager).
	CertSecret string
	// WebhookConfiguration names the mutating and validating configurations.
	WebhookConfiguration string
	// ServiceName is the Service the API server reaches snapgate through, for
	// the certificate's names.
	ServiceName string
	// CertValidity is how long a built-in serving certificate is valid; it is
	// renewed after two thirds of it.
	CertValidity time.Duration
	// RegisterURL, when set, registers the webhook configurations with this base
	// URL and the self-signed CA, and removes them on exit (local runs).
	RegisterURL string
	// Budget bounds the wait for a snapshot set within one request.
	Budget time.Duration
	// WebhookTimeout is the API server's limit for one call (the configurations'
	// timeoutSeconds).
	WebhookTimeout time.Duration
	// MetricsAddr and ProbeAddr serve Prometheus metrics and health probes; "0"
	// turns one off.
	MetricsAddr string
	ProbeAddr   string
	// PprofAddr serves Go's /debug/pprof, for finding where CPU and memory
	// go; empty (the default) or "0" serves none.
	PprofAddr string
	// LeaderElect runs the controllers on one replica at a time.
	LeaderElect bool
	// RecordGrace is how long to wait for a scale to be stored before its set
	// is taken as never admitted.
	RecordGrace time.Duration
	// Keep is how many sets a StatefulSet keeps when snapgate.io/keep does not say.
	Keep int
	// UnadmittedGrace is how long a set whose change never landed is kept.
	UnadmittedGrace time.Duration
	// ReadyDeadline is how long after it was taken a set may be not ready
	// before it is told overdue.
	ReadyDeadline time.Duration
	// KubeAPIQPS and KubeAPIBurst limit snapgate's requests to the API server.
	// Planning a set reads two objects per PVC, so client-go's default of 5 per
	// second would make a 10-replica set wait seconds on snapgate's own client.
	KubeAPIQPS   float32
	KubeAPIBurst int
	// Development switches logs to a human-readable form.
	Development bool
}

// NewServeOptions returns the defaults.
func NewServeOptions() *ServeOptions {
	return &ServeOptions{
		Namespace:            "snapgate-system",
		WebhookConfiguration: "snapgate",
		ServiceName:          "snapgate",
		CertValidity:         365 * 24 * time.Hour,
		WebhookPort:          9443,
		CertDir:              "/tmp/snapgate/certs",
		Budget:               snapwebhook.DefaultBudget,
		WebhookTimeout:       30 * time.Second,
		MetricsAddr:          ":8080",
		ProbeAddr:            ":8081",
		LeaderElect:          true,
		RecordGrace:          record.DefaultGrace,
		Keep:                 prune.DefaultKeep,
		UnadmittedGrace:      prune.DefaultUnadmittedGrace,
		ReadyDeadline:        follow.DefaultReadyDeadline,
		KubeAPIQPS:           50,
		KubeAPIBurst:         100,
	}
}

// AddFlags binds the options to a command's flags.
func (o *ServeOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "path of a kubeconfig; empty means in-cluster")
	f.StringVar(&o.Namespace, "namespace", o.Namespace, "snapgate's own namespace: never guarded, and home of the leader-election lease")
	f.StringSliceVar(&o.Namespaces, "namespaces", o.Namespaces, "guard these namespaces only (comma-separated), for a namespaced install whose rights are in them only; empty: every namespace but kube-system and --namespace")
	f.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "address the webhook server listens on; empty means all")
	f.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "port the webhook server listens on")
	f.StringVar(&o.CertDir, "cert-dir", o.CertDir, "directory of tls.crt and tls.key, reloaded when they change")
	f.BoolVar(&o.SelfSigned, "self-signed", o.SelfSigned, "generate a CA and serving certificate into --cert-dir (clusters without cert-manager)")
	f.StringVar(&o.CertSecret, "cert-secret", o.CertSecret, "keep the serving certificate in this Secret of --namespace, renew it and keep the webhook configurations' caBundle current (clusters without cert-manager)")
	f.StringVar(&o.WebhookConfiguration, "webhook-configuration", o.WebhookConfiguration, "name of snapgate's mutating and validating webhook configurations")
	f.StringVar(&o.ServiceName, "service-name", o.ServiceName, "the Service in --namespace the API server reaches snapgate through (the certificate's names)")
	f.DurationVar(&o.CertValidity, "cert-validity", o.CertValidity, "validity of a built-in serving certificate; it is renewed after two thirds of it")
	f.StringVar(&o.RegisterURL, "register-url", o.RegisterURL, "register the webhook configurations at this https base URL and remove them on exit (local runs; needs --self-signed)")
	f.DurationVar(&o.Budget, "budget", o.Budget, "how long one request may wait for its snapshot set before it is denied as retriable")
	f.DurationVar(&o.WebhookTimeout, "webhook-timeout", o.WebhookTimeout, "the API server's limit for one webhook call (at most 30s)")
	f.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "address of the Prometheus metrics endpoint; 0 turns it off")
	f.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "address of /healthz and /readyz; 0 turns them off")
	f.StringVar(&o.PprofAddr, "pprof-bind-address", o.PprofAddr, "address of Go's /debug/pprof profiles; empty (the default) serves none")
	f.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "run the controllers on one replica at a time")
	f.DurationVar(&o.RecordGrace, "record-grace", o.RecordGrace, "how long to wait for a scale to be stored before its set counts as never admitted")
	f.IntVar(&o.Keep, "keep", o.Keep, "snapshot sets each StatefulSet keeps when its snapgate.io/keep does not say; older ones are deleted")
	f.DurationVar(&o.UnadmittedGrace, "unadmitted-grace", o.UnadmittedGrace, "how long a set whose change was never admitted is kept before it is deleted")
	f.DurationVar(&o.ReadyDeadline, "ready-deadline", o.ReadyDeadline, "how long after it was taken a snapshot set may still be not ready before a SnapshotSetOverdue Event and metric tell of it")
	f.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "requests per second to the API server, on average")
	f.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "requests to the API server in a burst")
	f.BoolVar(&o.Development, "development", o.Development, "human-readable logs")
}

// Validate checks the options before anything starts.
func (o *ServeOptions) Validate() error {
	var errs []error
	if o.WebhookTimeout <= 0 || o.WebhookTimeout > 30*time.Second {
		errs = append(errs, fmt.Errorf("--webhook-timeout=%s: must be above 0 and at most 30s, the API server's limit", o.WebhookTimeout))
	}
	if o.Budget <= 0 || o.Budget > o.WebhookTimeout-2*time.Second {
		errs = append(errs, fmt.Errorf("--budget=%s: must be above 0 and at least 2s below --webhook-timeout=%s, or the API server gives up before snapgate answers", o.Budget, o.WebhookTimeout))
	}
	if o.WebhookPort < 1 || o.WebhookPort > 65535 {
		errs = append(errs, fmt.Errorf("--webhook-port=%d: must be a port number", o.WebhookPort))
	}
	if o.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir: must name the directory of the serving certificate"))
	}
	if o.RegisterURL != "" {
		u, err := url.Parse(o.RegisterURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("--register-url=%q: must be an https URL such as https://127.0.0.1:9443", o.RegisterURL))
		}
		if !o.SelfSigned {
			errs = append(errs, errors.New("--register-url needs --self-signed: snapgate registers the CA it generated"))
		}
	}
	if o.CertSecret != "" && o.SelfSigned {
		errs = append(errs, errors.New("--cert-secret and --self-signed: choose one; --cert-secret keeps the certificate in a Secret, --self-signed in --cert-dir only"))
	}
	if o.CertValidity < 30*time.Second {
		errs = append(errs, fmt.Errorf("--cert-validity=%s: must be at least 30s", o.CertValidity))
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst < 1 {
		errs = append(errs, fmt.Errorf("--kube-api-qps=%v and --kube-api-burst=%d: must be above 0", o.KubeAPIQPS, o.KubeAPIBurst))
	}
	for _, ns := range o.Namespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 || slices.Contains(policy.ProtectedNamespaces(o.Namespace), ns) {
			errs = append(errs, fmt.Errorf("--namespaces: %q must be a namespace name other than kube-system and snapgate's own (%s)", ns, o.Namespace))
		}
	}
	if o.Keep < 1 || o.Keep > 1000 {
		errs = append(errs, fmt.Errorf("--keep=%d: must be from 1 to 1000", o.Keep))
	}
	if o.UnadmittedGrace < time.Minute {
		errs = append(errs, fmt.Errorf("--unadmitted-grace=%s: must be at least 1m, or a retried change would lose its set", o.UnadmittedGrace))
	}
	if o.ReadyDeadline < 10*time.Second {
		errs = append(errs, fmt.Errorf("--ready-deadline=%s: must be at least 10s (snapshots that upload take minutes or hours; 4h is the default)", o.ReadyDeadline))
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace: must name snapgate's own namespace"))
	}
	return errors.Join(errs...)
}

func newServeCommand() *cobra.Command {
	o := NewServeOptions()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the admission webhook and the controllers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return Serve(ctrl.SetupSignalHandler(), o)
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// Scheme holds the types snapgate reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = snapv1.AddToScheme(s)
	_ = groupv1.AddToScheme(s)
	return s
}

// Serve runs snapgate until ctx ends.
func Serve(ctx context.Context, o *ServeOptions) error {
	ctrl.SetLogger(zap.New(zap.UseDevMode(o.Development)))
	cfg, err := restConfig(o.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	caPEM, rotator, err := o.certificates(ctx, cfg)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, o.managerOptions())
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	engineMetrics, err := snapshotter.NewMetrics(metrics.Registry)
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	runner, err := o.hookRunner(cfg, mgr, engineMetrics)
	if err != nil {
		return err
	}
	engine, err := newEngine(ctx, mgr, runner, engineMetrics)
	if err != nil {
		return err
	}
	if err := o.serveWebhooks(mgr, engine); err != nil {
		return err
	}
	if err := o.setupControllers(mgr, engine, runner, engineMetrics); err != nil {
		return err
	}
	if err := o.addRunnables(mgr, caPEM, rotator); err != nil {
		return err
	}
	ctrl.Log.WithName("serve").Info("Starting", "webhook", net.JoinHostPort(o.WebhookHost, strconv.Itoa(o.WebhookPort)), "budget", o.Budget)
	return mgr.Start(ctx)
}

// certificates makes sure there is a serving certificate to start with: one
// generated here (--self-signed, whose CA it returns for the registration), or
// the Secret's (--cert-secret, whose rotator keeps it current).
func (o *ServeOptions) certificates(ctx context.Context, cfg *rest.Config) ([]byte, *certs.Rotator, error) {
	certOpts := o.certOptions()
	var caPEM []byte
	if o.SelfSigned {
		var err error
		if caPEM, err = certs.Ensure(certOpts); err != nil {
			return nil, nil, fmt.Errorf("self-signed certificate: %w", err)
		}
	}
	if o.CertSecret == "" {
		return caPEM, nil, nil
	}
	rotator, err := o.rotator(cfg, certOpts)
	if err != nil {
		return nil, nil, err
	}
	// The webhook server needs a certificate in its directory to start.
	if _, err := rotator.Sync(ctx); err != nil {
		return nil, nil, fmt.Errorf("built-in certificate: %w", err)
	}
	return caPEM, rotator, nil
}

func (o *ServeOptions) managerOptions() ctrl.Options {
	managedBy := labels.SelectorFromSet(labels.Set{snapshotter.LabelManagedBy: snapshotter.ManagedBy})
	return ctrl.Options{
		Scheme:                  Scheme(),
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.ProbeAddr,
		PprofBindAddress:        o.PprofAddr,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "snapgate-controllers",
		LeaderElectionNamespace: o.Namespace,
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: o.WebhookHost, Port: o.WebhookPort, CertDir: o.CertDir,
		}),
		// Only snapgate's own snapshots are cached: the webhook must stay small
		// in a cluster of thousands of StatefulSets and PVCs, which it reads
		// from the API server when a change needs them.
		// StatefulSets are watched as metadata, and only snapgate's annotations
		// are kept of it: the rollback controller wakes on them. Pods and PVCs
		// are watched as metadata too, name and owner only, for a rollback to
		// wake when the ones it waits for are gone.
		Cache: cache.Options{
			DefaultNamespaces: o.cachedNamespaces(),
			ByObject: map[client.Object]cache.ByObject{
				&snapv1.VolumeSnapshot{}:          {Label: managedBy},
				snapshotter.StatefulSetMetadata(): {Transform: keepSnapgateAnnotations},
				rollback.PodMetadata():            {Transform: rollback.KeepOwnership},
				rollback.ClaimMetadata():          {Transform: rollback.KeepOwnership},
				// Of the Leases, only the in-flight records in snapgate's namespace.
				&coordinationv1.Lease{}: {
					Namespaces: map[string]cache.Config{o.Namespace: {}},
					Label:      labels.SelectorFromSet(labels.Set{snapshotter.LabelComponent: snapshotter.ComponentInFlight, snapshotter.LabelManagedBy: snapshotter.ManagedBy}),
				},
			},
			DefaultTransform: cache.TransformStripManagedFields(),
		},
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{
			&appsv1.StatefulSet{}, &corev1.PersistentVolumeClaim{}, &corev1.PersistentVolume{}, &corev1.Namespace{}, &corev1.Pod{},
			&snapv1.VolumeSnapshotClass{}, &groupv1.VolumeGroupSnapshot{}, &groupv1.VolumeGroupSnapshotClass{},
		}}},
	}
}

// cachedNamespaces are the namespaces the caches watch: all (nil), or, in a
// namespaced install, the guarded ones.
func (o *ServeOptions) cachedNamespaces() map[string]cache.Config {
	if len(o.Namespaces) == 0 {
		return nil
	}
	m := make(map[string]cache.Config, len(o.Namespaces))
	for _, ns := range o.Namespaces {
		m[ns] = cache.Config{}
	}
	return m
}

// hookRunner runs hooks through exec, and records the post-hooks it owes
// under a name of this replica's own.
func (o *ServeOptions) hookRunner(cfg *rest.Config, mgr ctrl.Manager, m *snapshotter.Metrics) (*hooks.Runner, error) {
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create clientset: %w", err)
	}
	identity, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("name this replica: %w", err)
	}
	return &hooks.Runner{
		Exec: &hooks.RemoteExecutor{Config: cfg, Client: clientset}, Client: mgr.GetClient(), Metrics: m,
		NoHooksIn: policy.ProtectedNamespaces(o.Namespace),
		InFlight: &hooks.InFlight{
			Client: mgr.GetClient(), Namespace: o.Namespace, Duration: hooks.InFlightDuration,
			Identity: identity + "_" + string(uuid.NewUUID()),
		},
	}, nil
}

// newEngine is the engine the guard and the controllers share, its waits
// woken by the manager's VolumeSnapshot informer.
func newEngine(ctx context.Context, mgr ctrl.Manager, runner *hooks.Runner, m *snapshotter.Metrics) (*snapshotter.Engine, error) {
	tracker := snapshotter.NewTracker()
	inf, err := mgr.GetCache().GetInformer(ctx, &snapv1.VolumeSnapshot{})
	if err != nil {
		return nil, fmt.Errorf("watch VolumeSnapshots: %w", err)
	}
	if err := tracker.Register(inf); err != nil {
		return nil, err
	}
	return &snapshotter.Engine{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Snapshots: mgr.GetCache(), Changes: tracker,
		Hooks: runner, Events: mgr.GetEventRecorder("snapgate"), Metrics: m,
		Backend: snapshotter.Groups{PerPVC: snapshotter.PerPVC{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Snapshots: mgr.GetCache()}},
	}, nil
}

func (o *ServeOptions) serveWebhooks(mgr ctrl.Manager, engine *snapshotter.Engine) error {
	guardMetrics, err := snapwebhook.NewMetrics(metrics.Registry)
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	srv := mgr.GetWebhookServer()
	srv.Register(snapwebhook.GuardPath, &webhook.Admission{Handler: &snapwebhook.Guard{
		Engine: engine, Reader: mgr.GetAPIReader(), Budget: o.Budget, Metrics: guardMetrics,
	}})
	srv.Register(snapwebhook.ValidatePath, &webhook.Admission{Handler: &snapwebhook.Validator{}})
	return nil
}

// setupControllers registers the controllers; they run on the elected leader.
func (o *ServeOptions) setupControllers(mgr ctrl.Manager, engine *snapshotter.Engine, runner *hooks.Runner, m *snapshotter.Metrics) error {
	events := mgr.GetEventRecorder("snapgate")
	rollbackMetrics, err := rollback.NewMetrics(metrics.Registry)
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	followMetrics, err := follow.NewMetrics(metrics.Registry)
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	verifier, err := newVerifier(mgr, runner.Exec, events)
	if err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		c    interface{ SetupWithManager(ctrl.Manager) error }
	}{
		{"thawer", &hooks.Thawer{Runner: runner, Client: mgr.GetClient(), Retry: hooks.InFlightDuration, GiveUp: 10 * time.Minute, Events: events}},
		{"recorder", &record.Recorder{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Grace: o.RecordGrace}},
		{"rollback controller", &rollback.Controller{
			Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Engine: engine, Backend: engine.Backend, Events: events, Metrics: rollbackMetrics,
		}},
		{"follower", &follow.Follower{Client: mgr.GetClient(), ReadyDeadline: o.ReadyDeadline, Events: events, Metrics: followMetrics}},
		{"scheduler", &schedule.Scheduler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Engine: engine, Events: events}},
		{"verify scheduler", &schedule.VerifyScheduler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Sets: engine.SnapshotBackend(), Verifier: verifier, Events: events}},
		{"pruner", &prune.Pruner{Client: mgr.GetClient(), Backend: engine.Backend, Keep: o.Keep, UnadmittedGrace: o.UnadmittedGrace, Events: events, Metrics: m}},
	} {
		if err := c.c.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("set up %s: %w", c.name, err)
		}
	}
	return nil
}

// newVerifier is the verifier of scheduled verifies, exec'ing as the hooks do.
func newVerifier(mgr ctrl.Manager, exec hooks.Executor, events events.EventRecorder) (*verify.Verifier, error) {
	m, err := verify.NewMetrics(metrics.Registry)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	kube, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, fmt.Errorf("create clientset: %w", err)
	}
	return &verify.Verifier{Client: mgr.GetClient(), Kube: kube, Exec: exec, Events: events, Metrics: m}, nil
}

// addRunnables adds the probes, the certificate rotator and, for local runs,
// the registration of the webhook configurations; and the gauges read at
// each scrape (the serving certificate's expiry, post-hooks owed).
func (o *ServeOptions) addRunnables(mgr ctrl.Manager, caPEM []byte, rotator *certs.Rotator) error {
	for _, g := range []prometheus.Collector{certs.ExpiryMetric(o.CertDir), hooks.OwedMetric(mgr.GetClient(), o.Namespace, nil)} {
		if err := metrics.Registry.Register(g); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	srv := mgr.GetWebhookServer()
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", srv.StartedChecker()); err != nil {
		return err
	}
	if rotator != nil {
		if err := mgr.Add(rotator); err != nil {
			return err
		}
	}
	if o.RegisterURL == "" {
		return nil
	}
	mutating, validating := snapwebhook.Configurations(snapwebhook.ConfigOptions{
		Name: o.WebhookConfiguration, Namespace: o.Namespace, Namespaces: o.Namespaces, URL: o.RegisterURL, CABundle: caPEM, TimeoutSeconds: int32(o.WebhookTimeout / time.Second),
	})
	return mgr.Add(&registration{client: mgr.GetClient(), ready: srv.StartedChecker(), objs: []client.Object{mutating, validating}})
}

// keepSnapgateAnnotations drops every annotation but snapgate's from a cached
// StatefulSet: kubectl's last-applied-configuration alone would hold a copy of
// each StatefulSet in memory.
func keepSnapgateAnnotations(obj any) (any, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return obj, nil
	}
	kept := map[string]string{}
	for k, v := range o.GetAnnotations() {
		if strings.HasPrefix(k, policy.Prefix) {
			kept[k] = v
		}
	}
	o.SetAnnotations(kept)
	o.SetManagedFields(nil)
	return obj, nil
}

// certOptions are the serving certificate's names: the Service's, and the
// webhook host where it is an address or a name of its own (local runs).
func (o *ServeOptions) certOptions() certs.Options {
	svc := o.ServiceName + "." + o.Namespace
	opts := certs.Options{Dir: o.CertDir, Validity: o.CertValidity,
		DNSNames: []string{svc + ".svc", svc + ".svc.cluster.local", svc, o.ServiceName, "localhost"}}
	host := o.WebhookHost
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip != nil {
		opts.IPs = []net.IP{ip}
	} else {
		opts.DNSNames = append(opts.DNSNames, host)
	}
	return opts
}

func (o *ServeOptions) rotator(cfg *rest.Config, opts certs.Options) (*certs.Rotator, error) {
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return &certs.Rotator{
		Client: c, Clientset: cs, Namespace: o.Namespace, Secret: o.CertSecret, Options: opts,
		Webhooks: o.WebhookConfiguration, Log: ctrl.Log.WithName("certs"),
	}, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (outside a cluster, pass --kubeconfig): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// registration registers the webhook configurations once the webhook server
// answers (a configuration that points at a server not yet listening would fail
// every guarded change), and removes them when snapgate stops.
type registration struct {
	client client.Client
	ready  healthz.Checker
	objs   []client.Object
}

// NeedLeaderElection: every replica serves the webhook, and a local run has one.
func (r *registration) NeedLeaderElection() bool { return false }

func (r *registration) Start(ctx context.Context) error {
	log := ctrl.Log.WithName("registration")
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return r.ready(nil) == nil, nil
	})
	if err != nil {
		return fmt.Errorf("webhook server did not start: %w", err)
	}
	if err := certs.Register(ctx, r.client, r.objs...); err != nil {
		return err
	}
	log.Info("Webhook configurations registered")
	<-ctx.Done()
	uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := certs.Unregister(uctx, r.client, r.objs...); err != nil {
		return err
	}
	log.Info("Webhook configurations removed")
	return nil
}

var _ manager.LeaderElectionRunnable = (*registration)(nil)
