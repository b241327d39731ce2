package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// answer is what the admin API answered one call.
type answer struct {
	code   int
	header http.Header
	body   string
}

// message is the message of a JSON answer, or "" when it has none.
func (a answer) message() string {
	var m apiError
	json.Unmarshal([]byte(a.body), &m)
	return m.Message
}

// apiCall makes one call to the admin API at addr; an empty token sends
// none, a token with a space is sent as the whole Authorization header.
func apiCall(t *testing.T, addr, method, path, token, body string) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case strings.Contains(token, " "):
		req.Header.Set("Authorization", token)
	case token != "":
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), testToken) {
		t.Errorf("%s %s: the answer holds the API token", method, path)
	}
	return answer{code: resp.StatusCode, header: resp.Header, body: string(data)}
}

// guarded are the calls that need the API token: every write, and logs.
var guarded = []struct{ method, path, body string }{
	{http.MethodPost, "/api/v1/sync", `{}`},
	{http.MethodPost, "/api/v1/rollback", `{"target": "1"}`},
	{http.MethodPost, "/api/v1/pause", ""},
	{http.MethodPost, "/api/v1/resume", ""},
	{http.MethodPost, "/api/v1/previews/x/wake", ""},
	{http.MethodPost, "/api/v1/previews/x/destroy", ""},
	{http.MethodGet, "/api/v1/deployments/1/logs", ""},
}

// reads are the calls anyone who reaches the admin listener may make.
var reads = []string{"/api/v1/status", "/api/v1/previews", "/api/v1/deployments", "/api/v1/deployments/1"}

func TestAPIWritesAndLogsNeedTheRightToken(t *testing.T) {
	s := serveProject(t, sleeper, "HAWSER_API_TOKEN="+testToken)
	s.waitDeployed(t)
	for _, c := range guarded {
		for _, token := range []string{"", "the-wrong-token-0123456789", "Basic " + testToken, "Bearer"} {
			a := apiCall(t, s.admin, c.method, c.path, token, c.body)
			if a.code != http.StatusUnauthorized || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") || a.message() == "" {
				t.Errorf("%s %s with token %q: %d %v %s", c.method, c.path, token, a.code, a.header, a.body)
			}
		}
	}
	for _, path := range reads {
		if a := apiCall(t, s.admin, http.MethodGet, path, "", ""); a.code != http.StatusOK {
			t.Errorf("GET %s without a token: %d %s", path, a.code, a.body)
		}
	}
	if a := apiCall(t, s.admin, http.MethodGet, "/api/v1/pause", testToken, ""); a.code != http.StatusNotFound || !strings.Contains(a.message(), "no API call GET /api/v1/pause") {
		t.Errorf("an unknown call: %d %s", a.code, a.body)
	}
}

func TestEveryAPICallAnswersARunningDaemon(t *testing.T) {
	s := serveProject(t, sleeper, "HAWSER_API_TOKEN="+testToken)
	s.waitDeployed(t)
	var st statusAnswer
	decode(t, apiCall(t, s.admin, http.MethodGet, "/api/v1/status", "", ""), &st)
	if st.RunningCommit != s.commit || st.WatchedCommit != s.commit || len(st.Services) != 1 || st.Paused || st.Deploying != nil {
		t.Errorf("status: %+v", st)
	}
	if a := apiCall(t, s.admin, http.MethodGet, "/api/v1/previews", "", ""); a.code != http.StatusOK || strings.TrimSpace(a.body) != "[]" {
		t.Errorf("previews: %d %s", a.code, a.body)
	}
	one := apiCall(t, s.admin, http.MethodGet, "/api/v1/deployments/1", "", "")
	if one.code != http.StatusOK || !strings.Contains(one.body, `"web": [`) || strings.Contains(one.body, `"logs"`) {
		t.Errorf("deployment 1: %d %s", one.code, one.body)
	}
	var log logAnswer
	decode(t, apiCall(t, s.admin, http.MethodGet, "/api/v1/deployments/1/logs", testToken, ""), &log)
	if log.Result != "succeeded" || !containsInOrder(strings.Join(log.Lines, "\n"), "deployment #1", "recreating web: missing", "web ready", "deployment succeeded") {
		t.Errorf("logs of 1: %+v", log)
	}
	for _, c := range []struct {
		method, path, body string
		code               int
		message            string
	}{
		{http.MethodGet, "/api/v1/deployments?limit=0", "", http.StatusBadRequest, "limit must be"},
		{http.MethodGet, "/api/v1/deployments/999", "", http.StatusNotFound, "no deployment 999"},
		{http.MethodGet, "/api/v1/deployments/999/logs", "", http.StatusNotFound, "no deployment 999"},
		{http.MethodPost, "/api/v1/sync", `{"recreate": "web"}`, http.StatusBadRequest, `{"recreate": ["web"]}`},
		{http.MethodPost, "/api/v1/sync", `{"recreate": ["web"]}`, http.StatusAccepted, "reconcile requested"},
		{http.MethodPost, "/api/v1/pause", "", http.StatusOK, "paused"},
		{http.MethodPost, "/api/v1/rollback", `{}`, http.StatusBadRequest, `{"target": "<deployment or commit>"}`},
		{http.MethodPost, "/api/v1/rollback", `{"target": "abcdef12"}`, http.StatusNotFound, "no such deployment"},
		{http.MethodPost, "/api/v1/rollback", `{"target": "1"}`, http.StatusAccepted, "rolling back to " + s.commit},
		{http.MethodPost, "/api/v1/resume", "", http.StatusAccepted, "resumed"},
		{http.MethodPost, "/api/v1/previews/nothing-like-this/wake", "", http.StatusNotFound, "no preview nothing-like-this"},
		{http.MethodPost, "/api/v1/previews/nothing-like-this/destroy", "", http.StatusNotFound, "no preview nothing-like-this"},
	} {
		a := apiCall(t, s.admin, c.method, c.path, testToken, c.body)
		if a.code != c.code || !strings.Contains(a.message(), c.message) || a.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s %s: %d %s, want %d %q", c.method, c.path, c.body, a.code, a.body, c.code, c.message)
		}
	}
	waitFor(t, func() bool {
		var list []struct{ Services map[string][]string }
		decode(t, apiCall(t, s.admin, http.MethodGet, "/api/v1/deployments?limit=5", "", ""), &list)
		return len(list) > 0 && strings.Join(list[0].Services["web"], "") == "forced"
	})
}

func decode(t *testing.T, a answer, v any) {
	t.Helper()
	if a.code != http.StatusOK {
		t.Fatalf("answer %d: %s", a.code, a.body)
	}
	if err := json.Unmarshal([]byte(a.body), v); err != nil {
		t.Fatalf("%v: %s", err, a.body)
	}
}

func TestAPIWithoutATokenRefusesEveryWriteAndTheLogs(t *testing.T) {
	s := serveProject(t, sleeper)
	for _, c := range guarded {
		a := apiCall(t, s.admin, c.method, c.path, testToken, c.body)
		what := "writes"
		if c.method == http.MethodGet {
			what = "reading deployment logs"
		}
		if a.code != http.StatusForbidden || !strings.Contains(a.message(), "set HAWSER_API_TOKEN in .env to allow "+what) {
			t.Errorf("%s %s: %d %s", c.method, c.path, a.code, a.body)
		}
	}
	for _, path := range reads[:3] {
		if a := apiCall(t, s.admin, http.MethodGet, path, "", ""); a.code != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, a.code, a.body)
		}
	}
	if _, _, err := hawser(t, "-env", s.env, "pause"); err == nil || !strings.Contains(err.Error(), "set HAWSER_API_TOKEN in .env to allow writes") {
		t.Errorf("CLI pause: %v", err)
	}
}

func TestCLITakesTheDaemonAndTokenFromTheEnvironmentFirst(t *testing.T) {
	s := serveProject(t, sleeper, "HAWSER_API_TOKEN="+testToken)
	elsewhere := writeEnv(t, "HAWSER_REPO="+t.TempDir(), "HAWSER_ADMIN_ADDR="+freeAddr(t), "HAWSER_API_TOKEN=a-token-the-daemon-does-not-have")
	t.Setenv("HAWSER_ADMIN_URL", "http://"+s.admin)
	if _, _, err := hawser(t, "-env", elsewhere, "pause"); err == nil || !strings.Contains(err.Error(), "not the daemon's HAWSER_API_TOKEN") {
		t.Errorf("with the file's wrong token: %v", err)
	}
	t.Setenv("HAWSER_API_TOKEN", testToken)
	if out, _, err := hawser(t, "-env", "/nonexistent/.env", "pause"); err != nil || !strings.Contains(out, "paused") {
		t.Errorf("with both in the environment and no file: %v %q", err, out)
	}
	t.Setenv("HAWSER_ADMIN_URL", "http://ops.example.com:9180")
	if _, _, err := hawser(t, "-env", "/nonexistent/.env", "pause"); err == nil || !strings.Contains(err.Error(), "clear text") {
		t.Errorf("the token to another host over plain HTTP: %v", err)
	}
}

// slowToBeHealthy is a project whose web service turns healthy only after
// some seconds, so that its deployments can be followed while they run.
const slowToBeHealthy = `
services:
  web:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sh", "-c", "sleep 4; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 500ms
      start_period: 1m
`

// deploying waits for a deployment to run and returns its ID.
func (s servedProject) deploying(t *testing.T) string {
	t.Helper()
	var id string
	waitFor(t, func() bool {
		var st statusAnswer
		decode(t, apiCall(t, s.admin, http.MethodGet, "/api/v1/status", "", ""), &st)
		if st.Deploying != nil {
			id = st.Deploying.ID
		}
		return id != ""
	})
	return id
}

// event is one server-sent event and when it came.
type event struct {
	name, data string
	at         time.Time
}

// followLog reads a deployment's log as server-sent events until the end
// event, starting after line from.
func followLog(t *testing.T, addr, id string, from int) []event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/v1/deployments/"+id+"/logs", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+testToken)
	if from > 0 {
		req.Header.Set("Last-Event-ID", strconv.Itoa(from))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("logs of %s: %s %v", id, resp.Status, resp.Header)
	}
	var events []event
	err = readEvents(resp.Body, func(name, data string) error {
		events = append(events, event{name: name, data: data, at: time.Now()})
		if name == "end" {
			return io.EOF
		}
		return nil
	})
	if err != nil || len(events) == 0 || events[len(events)-1].name != "end" {
		t.Fatalf("the stream ended without an end event: %v, %+v", err, events)
	}
	return events
}

func lines(events []event) string {
	var b strings.Builder
	for _, e := range events {
		if e.name == "" {
			b.WriteString(e.data + "\n")
		}
	}
	return b.String()
}

func TestLogsFollowARunningDeploymentUntilItEnds(t *testing.T) {
	s := serveProject(t, slowToBeHealthy, "HAWSER_API_TOKEN="+testToken)
	id := s.deploying(t)
	if a := apiCall(t, s.admin, http.MethodGet, "/api/v1/deployments/"+id, "", ""); a.code != http.StatusOK || !strings.Contains(a.body, `"result": "running"`) {
		t.Errorf("the running deployment: %d %s", a.code, a.body)
	}
	events := followLog(t, s.admin, id, 0)
	first, end := events[0], events[len(events)-1]
	if end.data != "succeeded" || !containsInOrder(lines(events), "deployment #"+id, "recreating web: missing", "web ready", "deployment succeeded") {
		t.Errorf("end %q, lines:\n%s", end.data, lines(events))
	}
	// Live: the first lines came while the healthcheck still failed.
	if end.at.Sub(first.at) < time.Second {
		t.Errorf("the log came all at once, at the end: %s apart", end.at.Sub(first.at))
	}
	// A client that reconnects gets the lines after the last it saw.
	again := followLog(t, s.admin, id, 2)
	if want := strings.SplitN(lines(events), "\n", 3)[2]; lines(again) != want {
		t.Errorf("from line 2:\n%s\nwant\n%s", lines(again), want)
	}

	// The CLI follows a deployment to its end.
	if _, _, err := hawser(t, "-env", s.env, "sync", "web"); err != nil {
		t.Fatal(err)
	}
	id = s.deploying(t)
	out, _, err := hawser(t, "-env", s.env, "logs", id)
	if err != nil || !containsInOrder(out, "deployment #"+id, "recreating web: forced", "web ready", "deployment succeeded") {
		t.Errorf("hawser logs %s: %v\n%s", id, err, out)
	}
	if a := apiCall(t, s.admin, http.MethodGet, "/api/v1/deployments/"+id, "", ""); !strings.Contains(a.body, `"result": "succeeded"`) {
		t.Errorf("deployment %s once its log ended: %s", id, a.body)
	}
}
