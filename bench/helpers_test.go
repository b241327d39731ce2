package bench

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/source"
	"hawser.dev/hawser/reconciler/store"
)

// serveDeps is what `hawser serve` gives a project's reconciler, on a fresh
// state directory: the git source of the repository at repo, images, the
// store, metrics and a logger. The caller adds the converger and, as the
// benchmark needs, a router or a registry. The store is closed when b ends.
func serveDeps(b *testing.B, docker *client.Client, repo string) reconciler.Deps {
	b.Helper()
	stateDir := b.TempDir()
	st, err := store.Open(filepath.Join(stateDir, "hawser.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	// serve's default level; an idle tick logs nothing at info.
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	src, err := source.New(repo, source.Auth{}, filepath.Join(stateDir, "git"), filepath.Join(stateDir, "checkouts"), log)
	if err != nil {
		b.Fatal(err)
	}
	return reconciler.Deps{
		Source:  src,
		Images:  images.New(docker, filepath.Join(stateDir, "builds"), log),
		Store:   st,
		Metrics: reconciler.NewMetrics(prometheus.NewRegistry(), "bench"),
		Log:     log,
	}
}
