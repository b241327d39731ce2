package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"hawser.dev/hawser/proxy"
	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/config"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/preview"
	"hawser.dev/hawser/reconciler/source"
	"hawser.dev/hawser/reconciler/store"
	"hawser.dev/hawser/registry"
)

// reconcileTimeout bounds one reconcile, builds included.
const reconcileTimeout = 30 * time.Minute

// settle is how long a new container without a healthcheck must stay up.
const settle = time.Second

func serve(ctx context.Context, envFile string, stderr io.Writer) error {
	cfg, err := loadConfig(envFile, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	docker, err := connectDocker(ctx)
	if err != nil {
		return err
	}
	defer docker.Close()
	st, err := store.Open(filepath.Join(cfg.StateDir, "hawser.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	front, err := newFrontEnd(cfg, reg, log)
	if err != nil {
		return err
	}
	rec, err := newReconciler(cfg, docker, st, reg, front.routes, log)
	if err != nil {
		front.close()
		return err
	}
	front.proxy.SetOnDemand(rec.CommitPreview)
	admin, err := listen(cfg, "HAWSER_ADMIN_ADDR", cfg.AdminAddr)
	if err != nil {
		front.close()
		return err
	}
	handler, err := newAdmin(cfg, rec, reg, front, log)
	if err != nil {
		front.close()
		return err
	}
	srv := &http.Server{
		Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		// Requests end with the daemon: a log stream would hold up Shutdown.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	log.Info("hawser serving", "version", version, "project", cfg.Project,
		"admin", "http://"+admin.Addr().String(), "front end", front.url())

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return front.proxy.ServeListeners(ctx, front.http, front.https) })
	g.Go(func() error {
		if err := srv.Serve(admin); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	})
	g.Go(func() error { return reconcile(ctx, cfg, rec) })
	g.Go(func() error {
		watchOwnImage(ctx, cfg, docker, rec, log)
		return nil
	})
	return g.Wait()
}

// newAdmin builds the admin listener's handler with its webhooks and
// dashboard, and installs the public part at HAWSER_ADMIN_HOST on the front
// end.
func newAdmin(cfg *config.Config, rec *reconciler.Reconciler, reg *prometheus.Registry, front *frontEnd, log *slog.Logger) (http.Handler, error) {
	hooks, err := newWebhooks(cfg, rec, reg, log)
	if err != nil {
		return nil, err
	}
	dash, err := newDashboard(rec, cfg.APIToken, log)
	if err != nil {
		return nil, err
	}
	if cfg.AdminHost != "" {
		route := proxy.Route{Host: cfg.AdminHost, Service: "hawser", Handler: publicAdminHandler(rec, cfg.APIToken, log, hooks)}
		if err := front.routes.Set(adminRoutes, []proxy.Route{route}); err != nil {
			return nil, fmt.Errorf("%s: HAWSER_ADMIN_HOST: %w", cfg.File, err)
		}
	}
	return adminHandler(rec, reg, cfg.APIToken, log, adminParts{webhooks: hooks, dashboard: dash}), nil
}

// adminRoutes owns the front end's route to HAWSER_ADMIN_HOST.
const adminRoutes = "hawser-admin"

// reconcile runs the schedules, SIGHUP and the reconciler until ctx ends.
func reconcile(ctx context.Context, cfg *config.Config, rec *reconciler.Reconciler) error {
	stopSchedule := rec.Schedule(cfg.Schedule, cfg.RegistrySchedule, cfg.ScheduleJitter)
	defer stopSchedule()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				rec.Request(reconciler.TriggerSync)
			}
		}
	}()
	rec.Request(reconciler.TriggerStartup)
	return rec.Run(ctx, reconcileTimeout)
}

// frontEnd is the proxy with its listeners, opened before anything runs so
// a taken port fails the start.
type frontEnd struct {
	proxy       *proxy.Proxy
	routes      *proxy.Routes // the project's, its previews' and the admin host's
	http, https net.Listener
}

func newFrontEnd(cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (*frontEnd, error) {
	opts := proxy.Options{Logger: log, Registerer: reg, HTTPAddr: cfg.HTTPAddr, HTTPSAddr: cfg.HTTPSAddr}
	if cfg.Domain != "" {
		opts.TLS = &proxy.TLSOptions{Email: cfg.ACMEEmail, CA: cfg.ACMECA, StorageDir: filepath.Join(cfg.StateDir, "certificates")}
	}
	p, err := proxy.New(opts)
	if err != nil {
		return nil, err
	}
	f := &frontEnd{proxy: p, routes: proxy.NewRoutes(p)}
	if f.http, err = listen(cfg, "HAWSER_HTTP_ADDR", cfg.HTTPAddr); err != nil {
		return nil, err
	}
	if opts.TLS != nil {
		if f.https, err = listen(cfg, "HAWSER_HTTPS_ADDR", cfg.HTTPSAddr); err != nil {
			f.http.Close()
			return nil, err
		}
	}
	return f, nil
}

// close releases the listeners of a front end that will not serve.
func (f *frontEnd) close() {
	for _, ln := range []net.Listener{f.http, f.https} {
		if ln != nil {
			ln.Close()
		}
	}
}

func (f *frontEnd) url() string {
	if f.https != nil {
		return "https://" + f.https.Addr().String()
	}
	return "http://" + f.http.Addr().String()
}

func listen(cfg *config.Config, key, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", cfg.File, key, err)
	}
	return ln, nil
}

func newReconciler(cfg *config.Config, docker *client.Client, st *store.Store, reg prometheus.Registerer, router reconciler.Router, log *slog.Logger) (*reconciler.Reconciler, error) {
	stateDir := func(parts ...string) string {
		return filepath.Join(append([]string{cfg.StateDir}, parts...)...)
	}
	src, err := source.New(cfg.Repo, gitAuth(cfg), stateDir("git", cfg.Project), stateDir("checkouts", cfg.Project), log)
	if err != nil {
		return nil, err
	}
	env, err := watchEnv(cfg, log)
	if err != nil {
		return nil, err
	}
	seen, err := registry.OpenSeenFile(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	checker, err := registry.New(registry.Options{
		Auth: cfg.RegistryAuth, Insecure: cfg.InsecureRegistries, Seen: seen, Registerer: reg, Log: log,
	})
	if err != nil {
		return nil, err
	}
	// One build queue: HAWSER_MAX_BUILDS at once, production's first, and
	// a commit's image built once for production and its previews alike.
	queue := images.NewQueue(cfg.MaxBuilds, reg)
	builder := func(p images.Priority) *images.Images {
		return images.New(docker, stateDir("builds"), log, images.WithRegistryAuth(checker.PullAuth), images.WithQueue(queue, p))
	}
	project := projectOf(cfg, env.current)
	project.Previews = previewSettings(cfg, stateDir, log)
	project.Previews.Resolve = src.Resolve
	project.Previews.Images = builder(images.Preview)
	return reconciler.New(project, reconciler.Deps{
		Source:   src,
		Images:   builder(images.Production),
		Registry: checker,
		Router:   router,
		Converger: &converge.Converger{
			Docker: docker, Log: log, HealthTimeout: cfg.HealthTimeout, Settle: settle, DrainTimeout: cfg.DrainTimeout,
			UpstreamNetwork: cfg.UpstreamNetwork,
		},
		Store:   st,
		Metrics: reconciler.NewMetrics(reg, version),
		Log:     log,
		Disk:    docker,
	}), nil
}

// previewSettings configures branch previews; each gets its own git directories.
func previewSettings(cfg *config.Config, stateDir func(...string) string, log *slog.Logger) reconciler.Previews {
	return reconciler.Previews{
		Branches:    cfg.PreviewBranches,
		Domain:      cmp.Or(cfg.PreviewDomain, cfg.Domain, "localhost"),
		Inherit:     cfg.PreviewInherit,
		Limits:      preview.Limits{CPUs: cfg.PreviewCPUs, Memory: cfg.PreviewMemory},
		Idle:        cfg.PreviewIdle,
		WakeTimeout: cfg.WakeTimeout,
		TTL:         cfg.PreviewTTL,
		MaxRunning:  cfg.PreviewMaxRunning,
		Scheme:      map[bool]string{true: "https", false: "http"}[cfg.Domain != ""],
		Auth:        cfg.PreviewAuth,
		Overlay:     func() (map[string]string, error) { return preview.LoadOverlay(cfg.Dir) },
		NewSource: func(project string) (reconciler.Source, func() error, error) {
			git, checkouts, builds := stateDir("git", project), stateDir("checkouts", project), stateDir("builds", project)
			src, err := source.New(cfg.Repo, gitAuth(cfg), git, checkouts, log)
			remove := func() error { return errors.Join(os.RemoveAll(git), os.RemoveAll(checkouts), os.RemoveAll(builds)) }
			return src, remove, err
		},
	}
}

func connectDocker(ctx context.Context) (*client.Client, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Close()
		return nil, fmt.Errorf("docker engine not reachable: %w", err)
	}
	return c, nil
}

// loadConfig reads .env, printing every problem it finds.
func loadConfig(path string, stderr io.Writer) (*config.Config, error) {
	cfg, err := config.Load(path)
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(stderr, e)
		}
		return nil, errReported
	}
	return cfg, err
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// envFile re-reads .env when it changes, so an edit to a project key
// reaches the next tick. A broken edit keeps the last good values; changes
// to HAWSER_* keys take effect when hawser restarts.
type envFile struct {
	cfg  *config.Config
	log  *slog.Logger
	mu   sync.Mutex // previews read the file from their own reconciles
	stat os.FileInfo
}

// watchEnv starts watching the file cfg was loaded from.
func watchEnv(cfg *config.Config, log *slog.Logger) (*envFile, error) {
	fi, err := os.Stat(cfg.File)
	if err != nil {
		return nil, err
	}
	return &envFile{cfg: cfg, log: log, stat: fi}, nil
}

func (e *envFile) current() (map[string]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fi, err := os.Stat(e.cfg.File)
	if err != nil || (fi.ModTime().Equal(e.stat.ModTime()) && fi.Size() == e.stat.Size()) {
		return e.cfg.Env, nil
	}
	e.stat = fi
	next, err := config.Load(e.cfg.File)
	if err != nil {
		e.log.Error(".env changed but does not load; keeping the previous values", "err", err)
		return e.cfg.Env, nil
	}
	if !equalHawserKeys(e.cfg, next) {
		e.log.Warn(".env: HAWSER_* keys changed; restart hawser (run make) to apply them")
	}
	e.cfg.Env = next.Env
	return e.cfg.Env, nil
}

func equalHawserKeys(a, b *config.Config) bool {
	x, y := *a, *b
	x.Env, y.Env = nil, nil
	return reflect.DeepEqual(x, y)
}
