package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/store"
)

// statusTimeout bounds the Docker call behind a status request.
const statusTimeout = 10 * time.Second

// adminHandler serves the admin listener: health, metrics and the API the
// CLI talks to.
func adminHandler(rec *reconciler.Reconciler, reg *prometheus.Registry, log *slog.Logger) http.Handler {
	a := &admin{rec: rec, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /api/v1/status", a.status)
	mux.HandleFunc("GET /api/v1/previews", a.previews)
	mux.HandleFunc("GET /api/v1/deployments", a.deployments)
	mux.HandleFunc("GET /api/v1/deployments/{id}", a.deployment)
	mux.HandleFunc("POST /api/v1/sync", a.sync)
	mux.HandleFunc("POST /api/v1/rollback", a.rollback)
	mux.HandleFunc("POST /api/v1/pause", a.pause)
	mux.HandleFunc("POST /api/v1/resume", a.resume)
	return sameSiteJSON(mux)
}

// admin answers the API calls of one project's reconciler.
type admin struct {
	rec *reconciler.Reconciler
	log *slog.Logger
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
	if st, ok := a.currentStatus(w, r); ok {
		writeJSON(w, http.StatusOK, st)
	}
}

func (a *admin) previews(w http.ResponseWriter, r *http.Request) {
	st, ok := a.currentStatus(w, r)
	if !ok {
		return
	}
	if st.Previews == nil {
		st.Previews = []reconciler.PreviewStatus{}
	}
	writeJSON(w, http.StatusOK, st.Previews)
}

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
	writeJSON(w, http.StatusOK, list)
}

func (a *admin) deployment(w http.ResponseWriter, r *http.Request) {
	d, err := a.rec.Deployment(r.PathValue("id"))
	// A container's output may hold its secrets: the store keeps it, the
	// unauthenticated API does not serve it.
	d.Logs = ""
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Message: "no deployment " + r.PathValue("id")})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{Message: err.Error()})
	default:
		writeJSON(w, http.StatusOK, d)
	}
}

func (a *admin) sync(w http.ResponseWriter, r *http.Request) {
	var req syncRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeJSON(w, http.StatusBadRequest, apiError{Message: "sync: the body must be JSON like {\"recreate\": [\"web\"]}"})
		return
	}
	t := reconciler.TriggerSync
	t.Recreate = req.Recreate
	a.rec.Request(t)
	writeJSON(w, http.StatusAccepted, map[string]string{"message": "reconcile requested"})
}

func (a *admin) rollback(w http.ResponseWriter, r *http.Request) {
	var req rollbackRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || req.Target == "" {
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
		writeJSON(w, http.StatusAccepted, map[string]string{"message": "rolling back to " + commit + "; automatic updates are paused until `hawser resume`", "commit": commit})
	}
}

func (a *admin) pause(w http.ResponseWriter, _ *http.Request) {
	if err := a.rec.Pause(); err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "automatic updates paused until `hawser resume`"})
}

func (a *admin) resume(w http.ResponseWriter, _ *http.Request) {
	if err := a.rec.Resume(); err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"message": "automatic updates resumed; reconciling now"})
}

// sameSiteJSON refuses state-changing requests a web page could make on the
// operator's behalf: they must be JSON (which a form cannot send) and not
// come from another site.
func sameSiteJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if ct != "application/json" || r.Header.Get("Sec-Fetch-Site") == "cross-site" {
				writeJSON(w, http.StatusForbidden, apiError{Message: "send JSON (Content-Type: application/json) from the CLI or a script, not from a web page"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
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

// apiError is the body of every API error.
type apiError struct {
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
