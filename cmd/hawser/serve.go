package main

import (
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
	"syscall"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/config"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/images"
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
	rec, err := newReconciler(cfg, docker, st, reg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("%s: HAWSER_ADMIN_ADDR: %w", cfg.File, err)
	}
	srv := &http.Server{Handler: adminHandler(rec, reg, log), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server", "err", err)
		}
	}()
	log.Info("hawser serving", "version", version, "project", cfg.Project, "admin", "http://"+ln.Addr().String())

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
	err = rec.Run(ctx, reconcileTimeout)
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(err, srv.Shutdown(shutdown))
}

func newReconciler(cfg *config.Config, docker *client.Client, st *store.Store, reg prometheus.Registerer, log *slog.Logger) (*reconciler.Reconciler, error) {
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
	return reconciler.New(projectOf(cfg, env.current), reconciler.Deps{
		Source:    src,
		Images:    images.New(docker, stateDir("builds"), log, images.WithRegistryAuth(checker.PullAuth)),
		Registry:  checker,
		Converger: &converge.Converger{Docker: docker, Log: log, HealthTimeout: cfg.HealthTimeout, Settle: settle},
		Store:     st,
		Metrics:   reconciler.NewMetrics(reg, version),
		Log:       log,
	}), nil
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
