package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/config"
	"hawser.dev/hawser/reconciler/converge"
	"hawser.dev/hawser/reconciler/dockertest"
	"hawser.dev/hawser/reconciler/gittest"
	"hawser.dev/hawser/reconciler/preview"
	"hawser.dev/hawser/reconciler/store"
)

// What the dashboard must never show, and the log line only a signed-in
// visitor may read.
const (
	dashboardToken  = "dashboard-test-token-5b1e9c0d"
	dashboardSecret = "shop-secret-value-8d2f61"
	crashLine       = "worker-crash-output-3c7a"
)

// dashboardFixture is a project a real reconciler deployed on the engine,
// with the dashboard serving it on 127.0.0.1: services web and worker, a
// preview of the branch feat/login, and a later commit whose worker crashed
// and was rolled back.
type dashboardFixture struct {
	rec       *reconciler.Reconciler
	url       string
	good, bad string // the commits
	goodID    string // the deployments
	badID     string
	preview   string // the preview's URL
	logs      *bytes.Buffer
}

func shopCompose(workerCommand string) map[string]string {
	return map[string]string{"compose.yaml": `
services:
  web:
    image: hawser-test/busybox:1.36
    init: true
    command: ["sleep", "3600"]
    environment:
      SHOP_SECRET: ${SHOP_SECRET:-none}
  worker:
    image: hawser-test/busybox:1.36
    init: true
    command: ` + workerCommand + `
`}
}

func newDashboardFixture(t *testing.T) *dashboardFixture {
	t.Helper()
	docker := dockertest.Client(t)
	dockertest.Busybox(t, docker)
	project := fmt.Sprintf("hawser-dash-%d", time.Now().UnixNano()%1e9)
	for _, p := range []string{project, preview.ProjectName(project, preview.Slug("feat/login"))} {
		t.Cleanup(func() { dockertest.RemoveLabelled(t, docker, converge.LabelProject+"="+p) })
	}
	f := &dashboardFixture{logs: &bytes.Buffer{}}
	repo := gittest.New(t)
	f.good = repo.Commit("web and worker", shopCompose(`["sleep", "3600"]`))
	repo.Git("checkout", "-q", "-b", "feat/login")
	repo.Commit("login form", map[string]string{"login.txt": "login"})
	repo.Git("checkout", "-q", "main")
	env := writeEnv(t, "HAWSER_REPO="+repo.Dir, "HAWSER_PATH=.", "HAWSER_PROJECT="+project, "HAWSER_STATE_DIR="+t.TempDir(),
		"HAWSER_API_TOKEN="+dashboardToken, "HAWSER_PREVIEW_BRANCHES=feat/*", "HAWSER_PREVIEW_DOMAIN=preview.localhost",
		"HAWSER_HEALTH_TIMEOUT=20s", "SHOP_SECRET="+dashboardSecret)
	cfg, err := loadConfig(env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(cfg.StateDir, "hawser.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &syncWriter{w: f.logs}), nil))
	if f.rec, err = newReconciler(cfg, docker, st, prometheus.NewRegistry(), nil, log); err != nil {
		t.Fatal(err)
	}
	f.reconcile(t)
	f.bad = repo.Commit("worker crashes", shopCompose(`["sh", "-c", "echo `+crashLine+`; exit 3"]`))
	f.reconcile(t)
	f.readHistory(t)
	f.url = f.serve(t, cfg.APIToken, log)
	f.run(t)
	return f
}

// reconcile runs one reconcile as the schedule would; a failed deployment
// is part of the fixture.
func (f *dashboardFixture) reconcile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := f.rec.Reconcile(ctx, reconciler.TriggerSchedule); err != nil {
		t.Logf("reconcile: %v", err)
	}
}

// readHistory notes the deployments and the preview the reconciler made.
func (f *dashboardFixture) readHistory(t *testing.T) {
	list, err := f.rec.History(10)
	if err != nil || len(list) != 2 || list[0].Result != store.ResultRolledBack || list[1].Result != store.ResultSucceeded {
		t.Fatalf("want a rolled back deployment after a succeeded one, got %+v (%v)", list, err)
	}
	f.badID, f.goodID = list[0].ID, list[1].ID
	st := f.status(t)
	if len(st.Previews) != 1 || st.Previews[0].Branch != "feat/login" {
		t.Fatalf("want the preview of feat/login, got %+v", st.Previews)
	}
	f.preview = st.Previews[0].URL
}

// serve starts a dashboard of the reconciler with the token given on
// 127.0.0.1 and returns its URL.
func (f *dashboardFixture) serve(t *testing.T, token config.Secret, log *slog.Logger) string {
	t.Helper()
	dash, err := newDashboard(f.rec, token, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(dash)
	t.Cleanup(srv.Close)
	return srv.URL
}

// run starts the reconciler's loop, so what the buttons request is carried
// out; it stops before the containers are removed.
func (f *dashboardFixture) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.rec.Run(ctx, 3*time.Minute) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

func (f *dashboardFixture) status(t *testing.T) reconciler.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := f.rec.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// noRedirects shows the dashboard's redirects as they are.
var noRedirects = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// visitor sends one test's requests to a dashboard.
type visitor struct {
	t   *testing.T
	url string
}

// send makes one request with the cookies and headers (name, value, ...)
// given, and returns the response and its body.
func (v visitor) send(method, path string, form url.Values, cookies []*http.Cookie, headers ...string) (*http.Response, string) {
	v.t.Helper()
	req, err := http.NewRequest(method, v.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		v.t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		v.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		v.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, string(body)
}

// post sends a form as the dashboard's own page does.
func (v visitor) post(path string, form url.Values, cookies ...*http.Cookie) (*http.Response, string) {
	v.t.Helper()
	return v.send(http.MethodPost, path, form, cookies, "Sec-Fetch-Site", "same-origin", "Origin", v.url)
}

// signIn signs in through the form and returns the session cookie.
func (v visitor) signIn() *http.Cookie {
	v.t.Helper()
	resp, body := v.post("/ui/login", url.Values{"token": {dashboardToken}})
	if resp.StatusCode != http.StatusSeeOther {
		v.t.Fatalf("sign in: %s\n%s", resp.Status, body)
	}
	session := cookieNamed(resp, sessionCookie)
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/" || session.Secure {
		v.t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", session)
	}
	return session
}

// act posts a form action as a signed-in visitor, and checks where it
// leads and the message the page there shows, once.
func (v visitor) act(session *http.Cookie, path string, form url.Values, to, flashed string) {
	v.t.Helper()
	resp, body := v.post(path, form, session)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != to {
		v.t.Fatalf("POST %s: %s to %q, want 303 to %q\n%s", path, resp.Status, resp.Header.Get("Location"), to, body)
	}
	msg := cookieNamed(resp, flashCookie)
	if msg == nil {
		v.t.Fatalf("POST %s left no message", path)
	}
	resp, body = v.send(http.MethodGet, to, nil, []*http.Cookie{session, msg})
	if !strings.Contains(body, flashed) {
		v.t.Errorf("after POST %s, %s lacks %q:\n%s", path, to, flashed, body)
	}
	if cleared := cookieNamed(resp, flashCookie); cleared == nil || cleared.MaxAge >= 0 {
		v.t.Errorf("after POST %s, the message is not cleared: %+v", path, cleared)
	}
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestDashboard runs its specifications on one deployed project: deploying
// it is the slow part.
func TestDashboard(t *testing.T) {
	f := newDashboardFixture(t)
	t.Run("PagesShowTheProjectAndNoSecret", func(t *testing.T) { pagesShowTheProjectAndNoSecret(t, f) })
	t.Run("WithoutATokenItIsReadOnly", func(t *testing.T) { withoutATokenItIsReadOnly(t, f) })
	t.Run("ActionsNeedTheTokenFromTheDashboardItself", func(t *testing.T) { actionsNeedTheTokenFromTheDashboardItself(t, f) })
}

func pagesShowTheProjectAndNoSecret(t *testing.T, f *dashboardFixture) {
	v := visitor{t, f.url}
	session := v.signIn()
	pages := []string{"/", "/deployments", "/deployments/" + f.goodID, "/deployments/" + f.badID, "/previews", "/login", "/assets/style.css"}
	bodies := map[string]string{}
	for _, who := range []struct {
		name    string
		cookies []*http.Cookie
	}{{"anonymous", nil}, {"signed in", []*http.Cookie{session}}} {
		for _, page := range pages {
			resp, body := v.send(http.MethodGet, page, nil, who.cookies)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: GET %s: %s", who.name, page, resp.Status)
			}
			for _, secret := range []string{dashboardToken, dashboardSecret, session.Value} {
				if strings.Contains(body, secret) {
					t.Errorf("%s: GET %s shows the secret %q", who.name, page, secret)
				}
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("%s: GET %s may be framed (Content-Security-Policy %q): its buttons could be clickjacked", who.name, page, csp)
			}
			bodies[who.name+" "+page] = body
		}
	}
	expect := func(page string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(bodies[page], w) {
				t.Errorf("%s lacks %q:\n%s", page, w, bodies[page])
			}
		}
	}
	expect("anonymous /", `id="branch">main<`, reconciler.ShortCommit(f.good), `<span class="subject">web and worker</span>`, reconciler.ShortCommit(f.bad), "<strong>web</strong>",
		"<strong>worker</strong>", "all services up", `href="/deployments/`+f.badID+`"`, "rolled back", `service &#34;worker&#34; did not start`,
		`href="`+f.preview+`"`, `<a href="/login">Sign in</a>`)
	expect("anonymous /deployments/"+f.badID, f.bad, "worker", `id="logs-hidden"`)
	expect("signed in /deployments/"+f.badID, crashLine)
	expect("anonymous /previews", "feat/login", `href="`+f.preview+`"`, "running")
	expect("signed in /", `action="/ui/sync"`, `action="/ui/pause"`)
	expect("signed in /deployments", `name="target" value="`+f.goodID+`"`)
	if strings.Contains(bodies["anonymous /deployments/"+f.badID], crashLine) {
		t.Error("a container's log lines are shown to a visitor who did not sign in")
	}
	if strings.Contains(bodies["anonymous /"], `action="/ui/sync"`) || strings.Contains(bodies["anonymous /deployments"], `action="/ui/rollback"`) {
		t.Error("buttons are shown to a visitor who did not sign in")
	}
	if resp, _ := v.send(http.MethodGet, "/deployments/999", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown deployment: %s", resp.Status)
	}
	if strings.Contains(f.logs.String(), dashboardToken) || strings.Contains(f.logs.String(), dashboardSecret) {
		t.Error("the log shows a secret")
	}
}

func withoutATokenItIsReadOnly(t *testing.T, f *dashboardFixture) {
	v := visitor{t, f.serve(t, "", slog.New(slog.NewTextHandler(t.Output(), nil)))}
	_, body := v.send(http.MethodGet, "/", nil, nil)
	if !strings.Contains(body, "set <code>HAWSER_API_TOKEN</code>") || strings.Contains(body, `action="/ui/sync"`) || strings.Contains(body, `href="/login"`) {
		t.Errorf("the overview of a dashboard without a token:\n%s", body)
	}
	for _, token := range []string{"", dashboardToken} {
		if resp, _ := v.post("/ui/login", url.Values{"token": {token}}); resp.StatusCode != http.StatusForbidden || cookieNamed(resp, sessionCookie) != nil {
			t.Errorf("sign-in with %q and no token configured: %s", token, resp.Status)
		}
	}
	if resp, _ := v.post("/ui/pause", nil, &http.Cookie{Name: sessionCookie, Value: "99999999999."}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("pause without a token configured: %s", resp.Status)
	}
}

func actionsNeedTheTokenFromTheDashboardItself(t *testing.T, f *dashboardFixture) {
	v := visitor{t, f.url}
	session := v.signIn()
	forged := &http.Cookie{Name: sessionCookie, Value: fmt.Sprintf("%d.%x", time.Now().Add(time.Hour).Unix(), make([]byte, 32))}
	expired := &http.Cookie{Name: sessionCookie, Value: (&dashboard{token: dashboardToken}).session(time.Now().Add(-time.Second).Unix())}
	sameSite := []string{"Sec-Fetch-Site", "same-origin"}
	for _, c := range []struct {
		name    string
		cookie  *http.Cookie
		headers []string
	}{
		{"without a session", nil, sameSite},
		{"with a forged session", forged, sameSite},
		{"with an expired session", expired, sameSite},
		{"with the token itself as the cookie", &http.Cookie{Name: sessionCookie, Value: dashboardToken}, sameSite},
		{"from another site", session, []string{"Sec-Fetch-Site", "cross-site"}},
		{"from another origin, old browser", session, []string{"Origin", "http://evil.example"}},
	} {
		var cookies []*http.Cookie
		if c.cookie != nil {
			cookies = append(cookies, c.cookie)
		}
		for _, path := range []string{"/ui/pause", "/ui/rollback", "/ui/sync"} {
			if resp, _ := v.send(http.MethodPost, path, url.Values{"target": {f.goodID}}, cookies, c.headers...); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: POST %s: %s, want 403", c.name, path, resp.Status)
			}
		}
	}
	if st := f.status(t); st.Paused || st.PinnedCommit != "" {
		t.Fatalf("a refused action changed the project: paused %v, pinned %q", st.Paused, st.PinnedCommit)
	}
	if resp, _ := v.post("/ui/login", url.Values{"token": {"not-the-token-at-all"}}); resp.StatusCode != http.StatusForbidden || cookieNamed(resp, sessionCookie) != nil {
		t.Errorf("sign-in with a wrong token: %s, cookies %v", resp.Status, resp.Cookies())
	}
	if resp, _ := v.send(http.MethodPost, "/ui/login", url.Values{"token": {dashboardToken}}, nil, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in from another site: %s", resp.Status)
	}

	before := f.status(t).LastReconcile
	v.act(session, "/ui/sync", nil, "/", "Sync requested")
	waitFor(t, func() bool { return f.status(t).LastReconcile.After(before) })
	v.act(session, "/ui/pause", nil, "/", "Automatic updates paused")
	if st := f.status(t); !st.Paused {
		t.Error("pause: not paused")
	}
	v.act(session, "/ui/rollback", url.Values{"target": {"no-such-thing"}}, "/deployments", "Rollback refused")
	v.act(session, "/ui/rollback", url.Values{"target": {f.goodID}}, "/", "Rolling back to "+reconciler.ShortCommit(f.good))
	if st := f.status(t); !st.Paused || st.PinnedCommit != f.good {
		t.Errorf("rollback: paused %v, pinned %q; want pinned to %s", st.Paused, st.PinnedCommit, f.good)
	}
	v.act(session, "/ui/resume", nil, "/", "Automatic updates resumed")
	if st := f.status(t); st.Paused || st.PinnedCommit != "" {
		t.Errorf("resume: paused %v, pinned %q", st.Paused, st.PinnedCommit)
	}
}
