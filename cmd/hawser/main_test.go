package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/gittest"
)

// writeEnv writes a .env for a project in repo and returns its path.
func writeEnv(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func hawser(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestBadEnvIsReportedWithFileLineAndKeyBeforeDocker(t *testing.T) {
	env := writeEnv(t, "HAWSER_SCHEDUL=@every 1m", "HAWSER_SCHEDULE=every minute")
	for _, cmd := range []string{"serve", "validate"} {
		_, stderr, err := hawser(t, "-env", env, cmd)
		if err == nil {
			t.Fatalf("%s with a bad .env succeeded", cmd)
		}
		for _, want := range []string{env + ":1: HAWSER_SCHEDUL: unknown key; did you mean HAWSER_SCHEDULE?", env + ":2: HAWSER_SCHEDULE:"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%s: stderr %q lacks %q", cmd, stderr, want)
			}
		}
	}
}

func TestCLIWithoutADaemonSaysItIsNotRunning(t *testing.T) {
	env := writeEnv(t, "HAWSER_REPO="+t.TempDir(), "HAWSER_ADMIN_ADDR="+freeAddr(t))
	for _, cmd := range []string{"status", "sync"} {
		_, _, err := hawser(t, "-env", env, cmd)
		if err == nil || !strings.Contains(err.Error(), "hawser is not running at") {
			t.Errorf("%s: err = %v", cmd, err)
		}
	}
}

func TestValidateReportsTheComposeProblemOfTheWatchedCommit(t *testing.T) {
	repo := gittest.New(t)
	repo.Commit("bad", map[string]string{"app/compose.yaml": "services:\n  web:\n    image: busybox\n    cgroup_parent: x\n"})
	env := writeEnv(t, "HAWSER_REPO="+repo.Dir, "HAWSER_PATH=app")
	_, stderr, err := hawser(t, "-env", env, "validate")
	if err == nil || !strings.Contains(stderr, `service "web": cgroup_parent`) {
		t.Fatalf("err = %v, stderr = %q", err, stderr)
	}
	repo.Commit("good", map[string]string{"app/compose.yaml": "services:\n  web:\n    image: busybox\n"})
	stdout, stderr, err := hawser(t, "-env", env, "validate")
	if err != nil || !strings.Contains(stdout, `project "app"`) {
		t.Fatalf("err = %v, stdout = %q, stderr = %q", err, stdout, stderr)
	}
}

func TestServeDeploysAndTheCLIReportsThroughTheDaemon(t *testing.T) {
	docker := dockertest.Client(t)
	dockertest.Busybox(t, docker)
	project := fmt.Sprintf("hawser-cli-%d", time.Now().UnixNano()%1e9)
	t.Cleanup(func() { dockertest.RemoveLabelled(t, docker, converge.LabelProject+"="+project) })
	repo := gittest.New(t)
	commit := repo.Commit("first", map[string]string{"compose.yaml": `
services:
  web:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sleep", "3600"]
`})
	admin := freeAddr(t)
	env := writeEnv(t, "HAWSER_REPO="+repo.Dir, "HAWSER_PATH=.", "HAWSER_PROJECT="+project,
		"HAWSER_STATE_DIR="+t.TempDir(), "HAWSER_ADMIN_ADDR="+admin, "HAWSER_SCHEDULE=@every 1h",
		"HAWSER_HTTP_ADDR="+freeAddr(t))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() { done <- run(ctx, []string{"-env", env, "serve"}, &bytes.Buffer{}, &syncWriter{w: &logs}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	waitFor(t, func() bool {
		out, _, err := hawser(t, "-env", env, "status")
		return err == nil && strings.Contains(out, "succeeded of "+commit[:12])
	})
	out, _, _ := hawser(t, "-env", env, "status")
	for _, want := range []string{"project:   " + project, "watched:   " + commit, "running:   " + commit, "web: missing", "Up "} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if out, _, err := hawser(t, "-env", env, "sync", "web"); err != nil || !strings.Contains(out, "reconcile requested") {
		t.Errorf("sync: %v %q", err, out)
	}
	waitFor(t, func() bool {
		out, _, err := hawser(t, "-env", env, "status")
		return err == nil && strings.Contains(out, "web: forced")
	})
	if out, _, err := hawser(t, "-env", env, "history"); err != nil || !strings.Contains(out, "succeeded") || !strings.Contains(out, commit[:12]) {
		t.Errorf("history: %v\n%s", err, out)
	}
	if out, _, err := hawser(t, "-env", env, "history", "1"); err != nil || !strings.Contains(out, "web: missing") {
		t.Errorf("history 1: %v\n%s", err, out)
	}
	if _, _, err := hawser(t, "-env", env, "history", "999"); err == nil || !strings.Contains(err.Error(), "no deployment 999") {
		t.Errorf("history of an unknown deployment: %v", err)
	}
	if out, _, err := hawser(t, "-env", env, "previews"); err != nil || !strings.Contains(out, "no previews") {
		t.Errorf("previews: %v %q", err, out)
	}
	if out, _, err := hawser(t, "-env", env, "pause"); err != nil || !strings.Contains(out, "paused") {
		t.Errorf("pause: %v %q", err, out)
	}
	if out, _, _ := hawser(t, "-env", env, "status"); !strings.Contains(out, "paused:") {
		t.Errorf("status after pause:\n%s", out)
	}
	if out, _, err := hawser(t, "-env", env, "rollback", "1"); err != nil || !strings.Contains(out, "rolling back to "+commit) {
		t.Errorf("rollback: %v %q", err, out)
	}
	if _, _, err := hawser(t, "-env", env, "rollback", "nothing-like-this"); err == nil || !strings.Contains(err.Error(), "no such deployment") {
		t.Errorf("rollback to an unknown target: %v", err)
	}
	if out, _, err := hawser(t, "-env", env, "resume"); err != nil || !strings.Contains(out, "resumed") {
		t.Errorf("resume: %v %q", err, out)
	}
	resp, err := http.Post("http://"+admin+"/api/v1/pause", "text/plain", strings.NewReader("x"))
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a form-like POST to the admin API: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var metrics bytes.Buffer
	metrics.ReadFrom(resp.Body)
	for _, want := range []string{
		`hawser_build_info{`, `hawser_reconcile_total{result="deployed"} `,
		`hawser_source_commit_info{branch="main",commit="` + commit + `"} 1`,
		`hawser_service_recreations_total{reason="missing",service="web"} 1`,
		`hawser_service_recreations_total{reason="forced",service="web"} 1`,
		`hawser_last_success_timestamp_seconds`, `hawser_reconcile_duration_seconds_count`,
		`hawser_deployments_total{result="succeeded"}`, `hawser_route_table_swaps_total`,
	} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("metrics lack %q in:\n%s", want, metrics.String())
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 90s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
