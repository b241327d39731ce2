package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/config"
	"hawser.dev/hawser/reconciler/store"
)

const (
	// statusTimeout bounds the Docker call behind a status request.
	statusTimeout = 10 * time.Second
	// previewTimeout bounds waking or tearing down a preview, waiting for
	// the reconcile in progress included.
	previewTimeout = 5 * time.Minute
	// keepAlive is how often a log stream without news sends a comment, so
	// that proxies keep it open and a gone client is noticed.
	keepAlive = 20 * time.Second
)

// adminParts are what the admin listener serves besides the API; nil
// parts are left out.
type adminParts struct {
	webhooks  http.Handler // /webhook/{provider}
	dashboard http.Handler // / and its pages
}

// adminHandler serves the admin listener: health, metrics, the API the
// CLI talks to, the webhooks and the dashboard.
func adminHandler(rec *reconciler.Reconciler, reg *prometheus.Registry, token config.Secret, log *slog.Logger, parts adminParts) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/api/v1/", apiHandler(rec, token, log))
	if parts.webhooks != nil {
		mux.Handle("/webhook/", parts.webhooks)
	}
	if parts.dashboard != nil {
		mux.Handle("/", parts.dashboard)
	}
	return mux
}

// publicAdminHandler is what the front end serves at HAWSER_ADMIN_HOST, to
// the internet: the webhooks, which carry their own signatures, and the
// API, all of it behind the token, reads included. Metrics and the
// dashboard stay on the admin listener.
func publicAdminHandler(rec *reconciler.Reconciler, token config.Secret, log *slog.Logger, webhooks http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.Handle("/api/v1/", tokenGuard{token: token}.read("the API from outside the host", apiHandler(rec, token, log).ServeHTTP))
	if webhooks != nil {
		mux.Handle("/webhook/", webhooks)
	}
	return mux
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// apiHandler serves /api/v1/. Reads are open, but for deployment logs,
// which hold what builds and containers printed; writes and logs need the
// API token.
func apiHandler(rec *reconciler.Reconciler, token config.Secret, log *slog.Logger) http.Handler {
	a := &admin{rec: rec, log: log}
	g := tokenGuard{token: token}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", a.status)
	mux.HandleFunc("GET /api/v1/previews", a.previews)
	mux.HandleFunc("GET /api/v1/deployments", a.deployments)
	mux.HandleFunc("GET /api/v1/deployments/{id}", a.deployment)
	mux.Handle("GET /api/v1/deployments/{id}/logs", g.read("reading deployment logs", a.logs))
	mux.Handle("POST /api/v1/sync", g.write(a.sync))
	mux.Handle("POST /api/v1/rollback", g.write(a.rollback))
	mux.Handle("POST /api/v1/pause", g.write(a.pause))
	mux.Handle("POST /api/v1/resume", g.write(a.resume))
	mux.Handle("POST /api/v1/previews/{slug}/wake", g.write(a.wakePreview))
	mux.Handle("POST /api/v1/previews/{slug}/destroy", g.write(a.destroyPreview))
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, apiError{Message: fmt.Sprintf("there is no API call %s %s; README.md lists them", r.Method, r.URL.Path)})
	})
	return mux
}

// admin answers the API calls of one project's reconciler.
type admin struct {
	rec *reconciler.Reconciler
	log *slog.Logger
}

// statusAnswer is the answer to GET /api/v1/status.
type statusAnswer struct {
	reconciler.Status
	// Deploying is the deployment in progress, if any.
	Deploying *store.Deployment `json:"deploying,omitempty"`
}

func (a *admin) currentStatus(w http.ResponseWriter, r *http.Request) (reconciler.Status, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
	defer cancel()
	st, err := a.rec.Status(ctx)
	if err != nil {
		a.log.Warn("status: container list failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, apiError{Message: "cannot read the containers from Docker: " + err.Error()})
		return st, false
	}
	return st, true
}

func (a *admin) status(w http.ResponseWriter, r *http.Request) {
	st, ok := a.currentStatus(w, r)
	if !ok {
		return
	}
	answer := statusAnswer{Status: st}
	if d, ok := a.rec.Deploying(); ok {
		answer.Deploying = &d
	}
	writeJSON(w, http.StatusOK, answer)
}

func (a *admin) previews(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
	defer cancel()
	list, err := a.rec.Previews(ctx)
	if err != nil {
		a.log.Warn("previews: volume sizes", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, apiError{Message: "cannot measure the previews' volumes with Docker: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// deployments lists the newest deployments, the one in progress first.
func (a *admin) deployments(w http.ResponseWriter, r *http.Request) {
	limit, err := strconv.Atoi(cmp.Or(r.URL.Query().Get("limit"), "20"))
	if err != nil || limit < 1 || limit > 1000 {
		writeJSON(w, http.StatusBadRequest, apiError{Message: "limit must be a number from 1 to 1000"})
		return
	}
	list, err := a.rec.History(limit)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Message: "cannot read the deployment history: " + err.Error()})
		return
	}
	if d, ok := a.rec.Deploying(); ok {
		list = append([]store.Deployment{d}, list[:min(len(list), limit-1)]...)
	}
	writeJSON(w, http.StatusOK, orEmpty(list))
}

func (a *admin) deployment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if d, ok := a.rec.Deploying(); ok && d.ID == id {
		writeJSON(w, http.StatusOK, d)
		return
	}
	d, err := a.rec.Deployment(id)
	// A container's output may hold its secrets: the store keeps it, the
	// logs call serves it to whom has the token.
	d.Logs = ""
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Message: "no deployment " + id + "; `hawser history` lists them"})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{Message: err.Error()})
	default:
		writeJSON(w, http.StatusOK, d)
	}
}

// logAnswer is the answer to GET /api/v1/deployments/{id}/logs as JSON.
type logAnswer struct {
	ID string `json:"id"`
	// Result is "running" while the deployment runs.
	Result string `json:"result"`
	// Skipped counts the first lines, dropped to bound the memory held.
	Skipped int      `json:"skipped,omitempty"`
	Lines   []string `json:"lines"`
}

// logs answers with a deployment's log: as JSON, or as a stream of
// server-sent events that follows a running deployment until it ends.
func (a *admin) logs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	l, err := a.rec.DeploymentLog(id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Message: "no deployment " + id + "; `hawser history` lists them"})
		return
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{Message: err.Error()})
		return
	}
	if !acceptsEvents(r) {
		p := l.Read(0)
		writeJSON(w, http.StatusOK, logAnswer{ID: id, Result: cmp.Or(p.Result, "running"), Skipped: p.Skipped, Lines: orEmpty(p.Lines)})
		return
	}
	from, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
	streamLog(w, r, l, from)
}

func acceptsEvents(r *http.Request) bool {
	for _, accept := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(accept); err == nil && mt == "text/event-stream" {
			return true
		}
	}
	return false
}

// streamLog sends a log from line from on as server-sent events: one
// event per line, its ID the number of the next line (for Last-Event-ID),
// and an "end" event with the result once the deployment has ended.
func streamLog(w http.ResponseWriter, r *http.Request, l *reconciler.DeploymentLog, from int) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		p := l.Read(from)
		if p.Skipped > 0 {
			fmt.Fprintf(w, "data: [%d earlier lines dropped]\n\n", p.Skipped)
		}
		for i, line := range p.Lines {
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", p.Next-len(p.Lines)+i+1, line)
		}
		from = p.Next
		if p.Result != "" {
			fmt.Fprintf(w, "event: end\ndata: %s\n\n", p.Result)
			rc.Flush()
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-p.More:
		case <-tick.C:
			io.WriteString(w, ": still running\n\n")
		case <-r.Context().Done():
			return
		}
	}
}

func (a *admin) sync(w http.ResponseWriter, r *http.Request) {
	var req syncRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Message: `sync: the body must be empty or JSON like {"recreate": ["web"]}`})
		return
	}
	t := reconciler.TriggerSync
	t.Recreate = req.Recreate
	a.rec.Request(t)
	writeJSON(w, http.StatusAccepted, messageAnswer{Message: "reconcile requested; `hawser status` shows the deployment it starts"})
}

func (a *admin) rollback(w http.ResponseWriter, r *http.Request) {
	var req rollbackRequest
	if err := decodeBody(w, r, &req); err != nil || req.Target == "" {
		writeJSON(w, http.StatusBadRequest, apiError{Message: `rollback: the body must be JSON like {"target": "<deployment or commit>"}`})
		return
	}
	commit, err := a.rec.Rollback(req.Target)
	switch {
	case errors.Is(err, reconciler.ErrUnknownTarget):
		writeJSON(w, http.StatusNotFound, apiError{Message: err.Error()})
	case err != nil:
		writeJSON(w, http.StatusBadRequest, apiError{Message: err.Error()})
	default:
		writeJSON(w, http.StatusAccepted, messageAnswer{Message: "rolling back to " + commit + "; automatic updates are paused until `hawser resume`", Commit: commit})
	}
}

func (a *admin) pause(w http.ResponseWriter, _ *http.Request) {
	if err := a.rec.Pause(); err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, messageAnswer{Message: "automatic updates paused until `hawser resume`"})
}

func (a *admin) resume(w http.ResponseWriter, _ *http.Request) {
	if err := a.rec.Resume(); err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, messageAnswer{Message: "automatic updates resumed; reconciling now"})
}

func (a *admin) wakePreview(w http.ResponseWriter, r *http.Request) {
	slug := r.PathValue("slug")
	ctx, cancel := context.WithTimeout(r.Context(), previewTimeout)
	defer cancel()
	err := a.rec.WakePreview(ctx, slug)
	if err == nil {
		writeJSON(w, http.StatusOK, messageAnswer{Message: "preview " + slug + " is awake"})
		return
	}
	a.previewError(w, slug, err)
}

func (a *admin) destroyPreview(w http.ResponseWriter, r *http.Request) {
	slug := r.PathValue("slug")
	ctx, cancel := context.WithTimeout(r.Context(), previewTimeout)
	defer cancel()
	rec, err := a.rec.DestroyPreview(ctx, slug)
	if err != nil {
		a.previewError(w, slug, err)
		return
	}
	comesBack := fmt.Sprintf("while branch %s matches HAWSER_PREVIEW_BRANCHES, the next poll builds it afresh: delete the branch to keep it gone", rec.Branch)
	if rec.Pinned {
		comesBack = "the next request to its host builds it again"
	}
	writeJSON(w, http.StatusOK, messageAnswer{Message: "preview " + slug + " destroyed with its containers, networks, volumes, images, routes and checkouts; " + comesBack})
}

func (a *admin) previewError(w http.ResponseWriter, slug string, err error) {
	switch {
	case errors.Is(err, reconciler.ErrUnknownPreview):
		writeJSON(w, http.StatusNotFound, apiError{Message: "no preview " + slug + "; `hawser previews` lists them"})
	case errors.Is(err, context.DeadlineExceeded):
		writeJSON(w, http.StatusGatewayTimeout, apiError{Message: err.Error() + "; try again in a while"})
	default:
		a.log.Error("preview call", "slug", slug, "err", err)
		writeJSON(w, http.StatusInternalServerError, apiError{Message: err.Error()})
	}
}

// decodeBody reads a JSON body into v; an empty body leaves v as it is.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(v)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// tokenGuard lets through the API calls that carry the API token.
type tokenGuard struct {
	token config.Secret // empty: nobody has it, the calls are refused
}

// write guards a call that changes something. Besides the token, which a
// web page cannot send on the operator's behalf, it refuses what a page on
// another site or a form could send.
func (g tokenGuard) write(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" || (ct != "" && ct != "application/json") {
			writeJSON(w, http.StatusForbidden, apiError{Message: "send JSON (Content-Type: application/json) or no body, from the CLI or a script, not from a web page"})
			return
		}
		if g.allows(w, r, "writes") {
			h(w, r)
		}
	})
}

// read guards a call that reads what only the operators may see; what
// names the call in the refusal.
func (g tokenGuard) read(what string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.allows(w, r, what) {
			h(w, r)
		}
	})
}

// allows checks the request's bearer token, answering when it fails.
func (g tokenGuard) allows(w http.ResponseWriter, r *http.Request, what string) bool {
	if g.token == "" {
		writeJSON(w, http.StatusForbidden, apiError{Message: "the API refuses " + what + " without a token: set HAWSER_API_TOKEN in .env to allow " + what + ", then restart hawser"})
		return false
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hawser"`)
		writeJSON(w, http.StatusUnauthorized, apiError{Message: "this call needs the API token: send Authorization: Bearer <HAWSER_API_TOKEN> (the CLI sends the one in .env, or in the HAWSER_API_TOKEN environment variable)"})
		return false
	}
	if !sameToken(token, g.token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hawser", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, apiError{Message: "the API token is not the daemon's HAWSER_API_TOKEN"})
		return false
	}
	return true
}

// sameToken compares a token given with the configured one in constant
// time; an empty configured token matches nothing. Digests of equal length
// are compared, so the time tells nothing of the token's length either.
func sameToken(given string, token config.Secret) bool {
	got, want := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(token.Reveal()))
	return token != "" && subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// rollbackRequest is the body of POST /api/v1/rollback.
type rollbackRequest struct {
	// Target is a deployment ID or a commit.
	Target string `json:"target"`
}

// syncRequest is the body of POST /api/v1/sync; it may be empty.
type syncRequest struct {
	// Recreate names services to recreate even if nothing changed.
	Recreate []string `json:"recreate"`
}

// messageAnswer is the answer of a call that did or started something.
type messageAnswer struct {
	Message string `json:"message"`
	// Commit is the commit a rollback deploys.
	Commit string `json:"commit,omitempty"`
}

// apiError is the body of every API error.
type apiError struct {
	Message string `json:"message"`
}

// orEmpty makes a nil list an empty one, which JSON shows as [], not null.
func orEmpty[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
