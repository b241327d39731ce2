package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/config"
	"hawser.dev/hawser/reconciler/store"
)

// The dashboard is the admin listener's pages for people: the project at a
// glance, its deployments and previews, rendered on the server so that they
// work without JavaScript. Its buttons are forms that act with the API
// token, once the visitor has given it.

//go:embed dashboard
var dashboardFiles embed.FS

// Cookies the dashboard sets.
const (
	sessionCookie = "hawser_token"
	flashCookie   = "hawser_flash"
)

const (
	// sessionLifetime is how long a sign-in lasts.
	sessionLifetime = 24 * time.Hour
	// recentDeployments is how many deployments the overview lists, and
	// historyLength how many the deployments page does.
	recentDeployments = 5
	historyLength     = 50
	// deployingRefresh is how often the page of a deployment in progress
	// reloads itself, in seconds.
	deployingRefresh = 3
	// maxForm bounds the body of a form action.
	maxForm = 16 << 10
	// overviewRefresh is how often the overview reloads itself, in seconds.
	overviewRefresh = 30
)

// dashboard serves the pages of one project's reconciler.
type dashboard struct {
	rec    *reconciler.Reconciler
	token  config.Secret // empty: the pages are read-only
	log    *slog.Logger
	pages  map[string]*template.Template
	origin *http.CrossOriginProtection
}

// newDashboard returns the dashboard: the pages GET /, /deployments,
// /deployments/{id}, /previews, /login and /assets/style.css, and the form
// actions POST /ui/login, /ui/logout, /ui/sync, /ui/rollback, /ui/pause and
// /ui/resume. The actions check the origin of the request and the session
// cookie themselves; without a token, every action is refused.
func newDashboard(rec *reconciler.Reconciler, token config.Secret, log *slog.Logger) (http.Handler, error) {
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	d := &dashboard{rec: rec, token: token, log: log, pages: pages, origin: http.NewCrossOriginProtection()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.overview)
	mux.HandleFunc("GET /deployments", d.deployments)
	mux.HandleFunc("GET /deployments/{id}", d.deployment)
	mux.HandleFunc("GET /previews", d.previews)
	mux.HandleFunc("GET /login", d.login)
	mux.HandleFunc("GET /assets/style.css", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, dashboardFiles, "dashboard/assets/style.css")
	})
	mux.HandleFunc("POST /ui/login", d.signIn)
	mux.HandleFunc("POST /ui/logout", d.signOut)
	mux.HandleFunc("POST /ui/sync", d.action(d.sync))
	mux.HandleFunc("POST /ui/rollback", d.action(d.rollback))
	mux.HandleFunc("POST /ui/pause", d.action(d.pause))
	mux.HandleFunc("POST /ui/resume", d.action(d.resume))
	return pageHeaders(mux), nil
}

// parsePages parses each page with the layout and partials it shares.
func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"short": reconciler.ShortCommit, "ago": ago, "stamp": stamp, "took": took,
		"resultClass": resultClass, "stateClass": stateClass, "join": strings.Join,
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"overview", "deployments", "deployment", "previews", "login", "message"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(dashboardFiles, "dashboard/layout.html", "dashboard/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: %w", err)
		}
		pages[name] = t
	}
	return pages, nil
}

// pageHeaders keeps the pages out of frames (the buttons must not be
// clickjacked), out of caches (they may show logs), and keeps their
// address from the sites their preview links lead to.
func pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// view is what a page template gets: the frame every page shows, and the
// page's own data.
type view struct {
	Title   string
	Section string // the navigation entry to mark
	Version string
	Refresh int // seconds until the page reloads itself; 0: never
	Status  reconciler.Status
	// StatusErr says why the containers could not be read.
	StatusErr string
	Flash     *flash
	TokenSet  bool // HAWSER_API_TOKEN is configured
	SignedIn  bool
	Page      any
}

// frame reads what every page shows: the project's status, the flash
// message left by the last action, and whether the visitor signed in.
func (d *dashboard) frame(w http.ResponseWriter, r *http.Request, section, title string) view {
	ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
	defer cancel()
	st, err := d.rec.Status(ctx)
	v := view{
		Title: title, Section: section, Version: version, Status: st,
		Flash: takeFlash(w, r), TokenSet: d.token != "", SignedIn: d.signedIn(r),
	}
	if err != nil {
		d.log.Warn("dashboard: container list failed", "err", err)
		v.StatusErr = "Cannot read the containers from Docker: " + err.Error()
	}
	return v
}

// render writes a page whole, so a template error is a clean 500 and
// never half a page.
func (d *dashboard) render(w http.ResponseWriter, code int, name string, v view) {
	var buf bytes.Buffer
	if err := d.pages[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		d.log.Error("dashboard: render", "page", name, "err", err)
		http.Error(w, "the page failed to render; hawser's log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// message renders a page that only says something, with a status code.
func (d *dashboard) message(w http.ResponseWriter, r *http.Request, code int, text string) {
	v := d.frame(w, r, "", http.StatusText(code))
	v.Page = text
	d.render(w, code, "message", v)
}

// overviewPage is the project at a glance.
type overviewPage struct {
	historyPage
	Health   health
	Services []serviceView
}

// serviceView is a service with the health of each container and the
// health they add up to.
type serviceView struct {
	Name, Commit, Image string
	Health              health
	Containers          []containerView
}

// containerView is one container of a service.
type containerView struct {
	Name, State string
	Health      health
}

func newServiceView(s reconciler.ServiceStatus) serviceView {
	v := serviceView{Name: s.Name, Commit: s.Commit, Image: s.Image, Health: serviceHealth(s)}
	for i, name := range s.Containers {
		v.Containers = append(v.Containers, containerView{Name: name, State: s.States[i], Health: containerHealth(s.States[i])})
	}
	return v
}

func (d *dashboard) overview(w http.ResponseWriter, r *http.Request) {
	v := d.frame(w, r, "overview", "Overview")
	v.Refresh = overviewRefresh
	page := overviewPage{historyPage: d.history(recentDeployments), Health: projectHealth(v.Status.Services)}
	for _, s := range v.Status.Services {
		page.Services = append(page.Services, newServiceView(s))
	}
	v.Page = page
	d.render(w, http.StatusOK, "overview", v)
}

// historyPage is the newest deployments, or why they cannot be read.
type historyPage struct {
	Deployments []store.Deployment
	HistoryErr  string
}

// history returns the newest deployments, the one in progress first.
func (d *dashboard) history(limit int) historyPage {
	list, err := d.rec.History(limit)
	if dep, ok := d.rec.Deploying(); ok {
		list = append([]store.Deployment{dep}, list[:min(len(list), limit-1)]...)
	}
	if err != nil {
		return historyPage{Deployments: list, HistoryErr: err.Error()}
	}
	return historyPage{Deployments: list}
}

func (d *dashboard) deployments(w http.ResponseWriter, r *http.Request) {
	v := d.frame(w, r, "deployments", "Deployments")
	v.Page = d.history(historyLength)
	d.render(w, http.StatusOK, "deployments", v)
}

// deploymentPage is one deployment, with its log for a signed-in visitor.
type deploymentPage struct {
	store.Deployment
	// Log is the deployment's log: what it built, recreated and why, and
	// the last lines of a container that did not start.
	Log reconciler.LogPage
}

func (d *dashboard) deployment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	dep, err := d.find(id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.message(w, r, http.StatusNotFound, "There is no deployment #"+id+".")
		return
	case err != nil:
		d.message(w, r, http.StatusInternalServerError, "Cannot read the deployment: "+err.Error())
		return
	}
	v := d.frame(w, r, "deployments", "Deployment #"+dep.ID)
	if dep.Result == deploying {
		// No JavaScript follows the log: the page reloads until it ends.
		v.Refresh = deployingRefresh
	}
	// Builds and containers may print the application's secrets: only a
	// visitor with the token reads the log, which holds the record's Logs.
	page := deploymentPage{Deployment: dep}
	page.Logs = ""
	if v.SignedIn {
		if l, err := d.rec.DeploymentLog(id); err == nil {
			page.Log = l.Read(0)
		} else {
			page.Log.Lines = []string{"cannot read the log: " + err.Error()}
		}
	}
	v.Page = page
	d.render(w, http.StatusOK, "deployment", v)
}

// find returns a deployment, the one in progress included.
func (d *dashboard) find(id string) (store.Deployment, error) {
	if dep, ok := d.rec.Deploying(); ok && dep.ID == id {
		return dep, nil
	}
	return d.rec.Deployment(id)
}

func (d *dashboard) previews(w http.ResponseWriter, r *http.Request) {
	d.render(w, http.StatusOK, "previews", d.frame(w, r, "previews", "Previews"))
}

func (d *dashboard) login(w http.ResponseWriter, r *http.Request) {
	d.render(w, http.StatusOK, "login", d.frame(w, r, "login", "Sign in"))
}

// signIn checks the token a visitor typed and, when it is the API token,
// sets the session cookie.
func (d *dashboard) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if !d.sameOrigin(w, r) {
		return
	}
	given := r.PostFormValue("token")
	if !sameToken(given, d.token) {
		d.log.Warn("dashboard: sign-in refused", "remote", r.RemoteAddr)
		v := d.frame(w, r, "login", "Sign in")
		v.Page = "That is not the API token (HAWSER_API_TOKEN)."
		d.render(w, http.StatusForbidden, "login", v)
		return
	}
	expiry := time.Now().Add(sessionLifetime)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: d.session(expiry.Unix()), Path: "/", Expires: expiry,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	redirect(w, r, "/", flash{Kind: "ok", Message: "Signed in until " + expiry.Format(time.DateTime) + "."})
}

func (d *dashboard) signOut(w http.ResponseWriter, r *http.Request) {
	if !d.sameOrigin(w, r) {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	redirect(w, r, "/", flash{Kind: "ok", Message: "Signed out."})
}

// session is the value of the session cookie that lasts until expiry (Unix
// seconds). It is derived from the token rather than the token itself, so
// a cookie that leaks expires and does not give away what the API and CLI
// accept.
func (d *dashboard) session(expiry int64) string {
	mac := hmac.New(sha256.New, []byte(d.token.Reveal()))
	fmt.Fprintf(mac, "hawser dashboard session until %d", expiry)
	return fmt.Sprintf("%d.%x", expiry, mac.Sum(nil))
}

// signedIn reports whether the request carries a session cookie made from
// the configured token that has not expired.
func (d *dashboard) signedIn(r *http.Request) bool {
	c, err := r.Cookie(sessionCookie)
	if err != nil || d.token == "" {
		return false
	}
	until, _, _ := strings.Cut(c.Value, ".")
	expiry, err := strconv.ParseInt(until, 10, 64)
	if err != nil || time.Now().Unix() > expiry {
		return false
	}
	return hmac.Equal([]byte(c.Value), []byte(d.session(expiry)))
}

// sameOrigin refuses a form another site's page submits on the operator's
// behalf (CSRF), from its Sec-Fetch-Site and Origin headers.
func (d *dashboard) sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	if err := d.origin.Check(r); err != nil {
		d.log.Warn("dashboard: cross-origin form refused", "path", r.URL.Path, "err", err)
		http.Error(w, "refused: send this form from hawser's own dashboard", http.StatusForbidden)
		return false
	}
	return true
}

// action guards a form action: the form must come from the dashboard and
// the visitor must have signed in. act returns where to send the browser
// and what to tell it there.
func (d *dashboard) action(act func(*http.Request) (string, flash)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if !d.sameOrigin(w, r) {
			return
		}
		if !d.signedIn(r) {
			d.log.Warn("dashboard: action without a valid session refused", "path", r.URL.Path, "remote", r.RemoteAddr)
			d.message(w, r, http.StatusForbidden, d.signInHint())
			return
		}
		to, f := act(r)
		if f.Kind == "bad" {
			d.log.Warn("dashboard: action failed", "path", r.URL.Path, "err", f.Message)
		}
		redirect(w, r, to, f)
	}
}

func (d *dashboard) signInHint() string {
	if d.token == "" {
		return "The dashboard is read-only: set HAWSER_API_TOKEN in .env and restart hawser to use its buttons."
	}
	return "Sign in with the API token (HAWSER_API_TOKEN) to use the buttons."
}

func (d *dashboard) sync(*http.Request) (string, flash) {
	d.rec.Request(reconciler.TriggerSync)
	return "/", flash{Kind: "ok", Message: "Sync requested: hawser reconciles now, retrying a commit that failed before. Reload to see the result."}
}

func (d *dashboard) pause(*http.Request) (string, flash) {
	if err := d.rec.Pause(); err != nil {
		return "/", flash{Kind: "bad", Message: "Pause failed: " + err.Error()}
	}
	return "/", flash{Kind: "ok", Message: "Automatic updates paused; the running version is still kept up."}
}

func (d *dashboard) resume(*http.Request) (string, flash) {
	if err := d.rec.Resume(); err != nil {
		return "/", flash{Kind: "bad", Message: "Resume failed: " + err.Error()}
	}
	return "/", flash{Kind: "ok", Message: "Automatic updates resumed; deploying the head of the branch now."}
}

func (d *dashboard) rollback(r *http.Request) (string, flash) {
	commit, err := d.rec.Rollback(r.PostFormValue("target"))
	if err != nil {
		return "/deployments", flash{Kind: "bad", Message: "Rollback refused: " + err.Error()}
	}
	return "/", flash{Kind: "ok", Message: "Rolling back to " + reconciler.ShortCommit(commit) + "; automatic updates stay paused until you resume them."}
}

// flash is the message an action leaves for the page it redirects to.
type flash struct {
	Kind    string // ok or bad: the CSS class it is shown with
	Message string
}

// redirect sends the browser on with 303, so a reload does not repeat
// the action, leaving the flash message in a short-lived cookie.
func redirect(w http.ResponseWriter, r *http.Request, to string, f flash) {
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(f.Kind + "\n" + f.Message)),
		Path: "/", MaxAge: 60, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// takeFlash returns the flash message of the request, if any, and clears
// it so it shows once.
func takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	data, err := base64.RawURLEncoding.DecodeString(c.Value)
	kind, msg, ok := strings.Cut(string(data), "\n")
	if err != nil || !ok || (kind != "ok" && kind != "bad") {
		return nil
	}
	return &flash{Kind: kind, Message: msg}
}

// health is how a container, a service or the project looks to an
// operator. Class is the CSS class of its badge.
type health struct {
	Class, Label string
	rank         int // higher is worse
}

// containerHealth reads the engine's state summary of a container, e.g.
// "Up 3 minutes (healthy)": API 1.41 lists no structured health.
func containerHealth(state string) health {
	switch {
	case strings.Contains(state, "(unhealthy)"):
		return health{"bad", "unhealthy", 3}
	case strings.HasPrefix(state, "Restarting"):
		return health{"bad", "restarting", 3}
	case !strings.HasPrefix(state, "Up"):
		return health{"bad", "stopped", 3}
	case strings.Contains(state, "(health: starting)"):
		return health{"warn", "starting", 2}
	case strings.Contains(state, "(Paused)"):
		return health{"warn", "paused", 2}
	case strings.Contains(state, "(healthy)"):
		return health{"ok", "healthy", 0}
	}
	return health{"ok", "running", 1}
}

// serviceHealth is the worst health of a service's containers.
func serviceHealth(s reconciler.ServiceStatus) health {
	worst := health{"idle", "no containers", -1}
	for _, state := range s.States {
		if h := containerHealth(state); h.rank > worst.rank {
			worst = h
		}
	}
	return worst
}

// projectHealth is the worst health of the services, naming the service.
func projectHealth(services []reconciler.ServiceStatus) health {
	worst := health{"idle", "no containers", -1}
	for _, s := range services {
		if h := serviceHealth(s); h.rank > worst.rank {
			worst = h
			if h.Class != "ok" {
				worst.Label = s.Name + " " + h.Label
			}
		}
	}
	if worst.Class == "ok" {
		worst.Label = "all services up"
	}
	return worst
}

// ago says how long ago t was, roughly, as people say it.
func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return t.Format("2 Jan 2006")
}

// stamp is a time in full, for a tooltip.
func stamp(t time.Time) string { return t.Format(time.RFC3339) }

// deploying is the result of a deployment in progress.
const deploying = "running"

// took is how long a deployment ran, or has run so far.
func took(d store.Deployment) string {
	end := d.Ended
	if d.Result == deploying {
		end = time.Now()
	}
	return end.Sub(d.Started).Round(100 * time.Millisecond).String()
}

// resultClass is the CSS class of a deployment's result.
func resultClass(result string) string {
	switch result {
	case store.ResultSucceeded:
		return "ok"
	case store.ResultRolledBack, deploying:
		return "warn"
	}
	return "bad"
}

// stateClass is the CSS class of a preview's state: running, sleeping,
// failed, or anything else a later version may add.
func stateClass(state string) string {
	switch state {
	case "running":
		return "ok"
	case "sleeping":
		return "idle"
	case "failed":
		return "bad"
	}
	return "warn"
}
