package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/config"
	"hawser.dev/hawser/reconciler/source"
)

// validateTimeout bounds the ls-remote and fetch of a validation.
const validateTimeout = 5 * time.Minute

// validate checks .env and the compose project at the head of the watched
// branch, in a scratch directory so a running daemon is not disturbed.
func validate(ctx context.Context, envFile string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(envFile, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, validateTimeout)
	defer cancel()
	scratch, err := os.MkdirTemp("", "hawser-validate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	quiet := slog.New(slog.DiscardHandler)
	src, err := source.New(cfg.Repo, gitAuth(cfg), filepath.Join(scratch, "git"), filepath.Join(scratch, "checkouts"), quiet)
	if err != nil {
		fmt.Fprintf(stderr, "%s: HAWSER_REPO: %v\n", cfg.File, err)
		return errReported
	}
	v, err := reconciler.Validate(ctx, src, projectOf(cfg, func() (map[string]string, error) { return cfg.Env, nil }))
	if err != nil {
		// Paths in the repository, not in the scratch directory that is
		// gone once validate returns.
		checkout := filepath.Join(scratch, "checkouts", "current") + string(filepath.Separator)
		msg := strings.ReplaceAll(err.Error(), checkout, "")
		fmt.Fprintf(stderr, "%s (commit %s of %s): %s\n", cfg.Path, reconciler.ShortCommit(v.Commit), orNone(v.Branch), msg)
		return errReported
	}
	names := slices.Sorted(maps.Keys(v.Project.Services))
	fmt.Fprintf(stdout, "ok: %s valid; project %q at %s (%s): %s\n", cfg.File, v.Project.Name, reconciler.ShortCommit(v.Commit), v.Branch, strings.Join(names, ", "))
	return nil
}

func gitAuth(cfg *config.Config) source.Auth {
	return source.Auth{Token: cfg.GitToken.Reveal(), SSHKeyFile: cfg.GitSSHKey, KnownHostsFile: cfg.GitKnownHosts}
}

func projectOf(cfg *config.Config, env func() (map[string]string, error)) reconciler.Project {
	return reconciler.Project{
		Name: cfg.Project, Branch: cfg.Branch, Path: cfg.Path, ComposeFiles: cfg.ComposeFiles,
		Profiles: cfg.Profiles, Env: env, KeepCheckouts: cfg.KeepCheckouts, PruneImages: cfg.PruneImages,
		Hosts: reconciler.Hosts{Domain: cmp.Or(cfg.Domain, "localhost"), Primary: cfg.PrimaryService},
	}
}
