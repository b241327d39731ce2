package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/gittest"
	"hawser.dev/hawser/reconciler/store"
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
	noDaemonEnvironment(t)
	admin := freeAddr(t)
	env := writeEnv(t, "HAWSER_REPO="+t.TempDir(), "HAWSER_ADMIN_ADDR="+admin)
	want := "hawser is not running at http://" + admin + ": start it with `make` or `hawser serve`"
	for _, args := range [][]string{{"status"}, {"sync"}, {"history", "-json"}, {"logs", "3"}, {"previews", "wake", "x"}, {"pause"}, {"health"}} {
		stdout, _, err := hawser(t, append([]string{"-env", env}, args...)...)
		if err == nil || err.Error() != want || stdout != "" {
			t.Errorf("%v: err = %v, stdout %q", args, err, stdout)
		}
	}
	// The environment's URL comes before the file's address.
	other := freeAddr(t)
	t.Setenv("HAWSER_ADMIN_URL", "http://"+other+"/")
	if _, _, err := hawser(t, "-env", env, "status"); err == nil || !strings.Contains(err.Error(), "not running at http://"+other+":") {
		t.Errorf("with HAWSER_ADMIN_URL: %v", err)
	}
}

// noDaemonEnvironment clears the variables that point the CLI at a daemon,
// so that a developer's shell does not steer the tests.
func noDaemonEnvironment(t *testing.T) {
	t.Setenv("HAWSER_ADMIN_URL", "")
	t.Setenv("HAWSER_API_TOKEN", "")
}

func TestUsageRefusesArgumentsThatDoNotFit(t *testing.T) {
	for _, args := range [][]string{
		{}, {"status", "x"}, {"rollback"}, {"logs", "1", "2"}, {"previews", "wake"}, {"previews", "nap", "x"},
		{"serve", "-json"}, {"-json", "version"}, {"health", "x"},
	} {
		if _, stderr, err := hawser(t, args...); err == nil || !strings.Contains(stderr, "Usage:") {
			t.Errorf("%v: err = %v, stderr %q", args, err, stderr)
		}
	}
	if out, _, err := hawser(t, "version"); err != nil || !strings.HasPrefix(out, "hawser ") {
		t.Errorf("version: %v %q", err, out)
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
	repo.Commit("unset", map[string]string{"app/compose.yaml": "services:\n  web:\n    image: busybox\n    environment:\n      PASSWORD: ${PASSWORD:?set PASSWORD in .env}\n"})
	if _, stderr, _ := hawser(t, "-env", env, "validate"); !strings.Contains(stderr, "compose project app: ") || !strings.Contains(stderr, "set PASSWORD in .env") {
		t.Fatalf("a missing required key: stderr = %q, want it named with the project's path in the repository", stderr)
	}
	repo.Commit("good", map[string]string{"app/compose.yaml": "services:\n  web:\n    image: busybox\n"})
	stdout, stderr, err := hawser(t, "-env", env, "validate")
	if err != nil || !strings.Contains(stdout, `project "app"`) {
		t.Fatalf("err = %v, stdout = %q, stderr = %q", err, stdout, stderr)
	}
}

// testToken is the API token of the daemons the tests run.
const testToken = "the-token-of-the-tests-0123456789"

// sleeper is a project of one service that only sleeps.
const sleeper = `
services:
  web:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sleep", "3600"]
`

// servedProject is a daemon a test runs in-process, on a repository of
// its own.
type servedProject struct {
	env     string // the .env file
	admin   string // host:port of the admin listener
	project string
	commit  string // of the repository's first commit
	repo    *gittest.Repo
	front   string // host:port of the front end's HTTP listener
}

// serveProject runs `hawser serve` on a new repository holding compose,
// with the given .env lines besides those it needs, until the test ends.
func serveProject(t *testing.T, compose string, lines ...string) servedProject {
	t.Helper()
	docker := dockertest.Client(t)
	dockertest.Busybox(t, docker)
	noDaemonEnvironment(t)
	s := servedProject{project: fmt.Sprintf("hawser-cli-%d", time.Now().UnixNano()%1e9), admin: freeAddr(t)}
	t.Cleanup(func() { dockertest.RemoveLabelled(t, docker, converge.LabelProject+"="+s.project) })
	s.repo, s.front = gittest.New(t), freeAddr(t)
	s.commit = s.repo.Commit("first", map[string]string{"compose.yaml": compose})
	s.env = writeEnv(t, append([]string{
		"HAWSER_REPO=" + s.repo.Dir, "HAWSER_PATH=.", "HAWSER_PROJECT=" + s.project, "HAWSER_STATE_DIR=" + t.TempDir(),
		"HAWSER_ADMIN_ADDR=" + s.admin, "HAWSER_SCHEDULE=@every 1h", "HAWSER_HTTP_ADDR=" + s.front,
	}, lines...)...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncWriter{w: &bytes.Buffer{}}
	go func() { done <- run(ctx, []string{"-env", s.env, "serve"}, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("the daemon's log:\n%s", logs.w)
		}
	})
	waitFor(t, func() bool {
		_, _, err := hawser(t, "-env", s.env, "health")
		return err == nil
	})
	return s
}

// waitDeployed waits until the first deployment of s succeeded.
func (s servedProject) waitDeployed(t *testing.T) {
	t.Helper()
	waitFor(t, func() bool {
		out, _, err := hawser(t, "-env", s.env, "status")
		return err == nil && strings.Contains(out, "succeeded of "+s.commit[:12])
	})
}

func TestServeDeploysAndTheCLIReportsThroughTheDaemon(t *testing.T) {
	s := serveProject(t, sleeper, "HAWSER_API_TOKEN="+testToken)
	env, commit := s.env, s.commit
	s.waitDeployed(t)
	out, _, _ := hawser(t, "-env", env, "status")
	for _, want := range []string{"project:   " + s.project, "watched:   " + commit, "running:   " + commit + " (first)", "web: missing", "Up "} {
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
	if out, _, err := hawser(t, "-env", env, "history", "1"); err != nil || !strings.Contains(out, "web: missing") || !strings.Contains(out, "hawser logs 1") {
		t.Errorf("history 1: %v\n%s", err, out)
	}
	if _, _, err := hawser(t, "-env", env, "history", "999"); err == nil || !strings.Contains(err.Error(), "no deployment 999") {
		t.Errorf("history of an unknown deployment: %v", err)
	}
	if out, _, err := hawser(t, "-env", env, "logs", "1"); err != nil || !containsInOrder(out, "deployment #1 of "+commit[:12], "recreating web: missing", "web ready", "deployment succeeded in ") {
		t.Errorf("logs 1: %v\n%s", err, out)
	}
	if out, _, err := hawser(t, "-env", env, "logs"); err != nil || !strings.Contains(out, "recreating web: forced") {
		t.Errorf("logs of the newest deployment: %v\n%s", err, out)
	}
	if out, _, err := hawser(t, "-env", env, "previews"); err != nil || !strings.Contains(out, "no previews") {
		t.Errorf("previews: %v %q", err, out)
	}
	if _, _, err := hawser(t, "-env", env, "previews", "destroy", "nothing-like-this"); err == nil || !strings.Contains(err.Error(), "no preview nothing-like-this") {
		t.Errorf("destroy an unknown preview: %v", err)
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
	if out, _, err := hawser(t, "-env", env, "health"); err != nil || out != "hawser is up at http://"+s.admin+"\n" {
		t.Errorf("health: %v %q", err, out)
	}
	resp, err := http.Post("http://"+s.admin+"/api/v1/pause", "text/plain", strings.NewReader("x"))
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a form-like POST to the admin API: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + s.admin + "/metrics")
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

func TestCLIPrintsTheAPIAnswersAsJSONForScripts(t *testing.T) {
	s := serveProject(t, sleeper, "HAWSER_API_TOKEN="+testToken)
	s.waitDeployed(t)
	var st statusAnswer
	jsonOf(t, &st, "-env", s.env, "status", "-json")
	if st.RunningCommit != s.commit || len(st.Services) != 1 || st.Services[0].Name != "web" || st.LastDeployment == nil {
		t.Errorf("status: %+v", st)
	}
	var list []store.Deployment
	jsonOf(t, &list, "-json", "-env", s.env, "history")
	if len(list) != 1 || list[0].ID != "1" || list[0].Result != store.ResultSucceeded {
		t.Errorf("history: %+v", list)
	}
	var one store.Deployment
	jsonOf(t, &one, "-env", s.env, "history", "1", "-json")
	if one.Commit != s.commit || len(one.Services["web"]) != 1 {
		t.Errorf("history 1: %+v", one)
	}
	var log logAnswer
	jsonOf(t, &log, "-env", s.env, "-json", "logs", "1")
	if log.ID != "1" || log.Result != store.ResultSucceeded || !containsInOrder(strings.Join(log.Lines, "\n"), "recreating web: missing", "deployment succeeded") {
		t.Errorf("logs 1: %+v", log)
	}
	var previews []reconciler.PreviewStatus
	if jsonOf(t, &previews, "-env", s.env, "previews", "-json"); previews == nil || len(previews) != 0 {
		t.Errorf("previews: %#v", previews)
	}
	for _, args := range [][]string{{"pause"}, {"rollback", "1"}, {"resume"}, {"sync", "web"}} {
		var m messageAnswer
		jsonOf(t, &m, append([]string{"-env", s.env, "-json"}, args...)...)
		if m.Message == "" || (args[0] == "rollback") != (m.Commit == s.commit) {
			t.Errorf("%v: %+v", args, m)
		}
	}
}

// jsonOf runs the CLI and decodes what it printed into v.
func jsonOf(t *testing.T, v any, args ...string) {
	t.Helper()
	out, stderr, err := hawser(t, args...)
	if err != nil {
		t.Fatalf("%v: %v %s", args, err, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%v printed no JSON: %v\n%s", args, err, out)
	}
}

// containsInOrder reports whether s holds each of want, one after the other.
func containsInOrder(s string, want ...string) bool {
	for _, w := range want {
		i := strings.Index(s, w)
		if i < 0 {
			return false
		}
		s = s[i+len(w):]
	}
	return true
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
