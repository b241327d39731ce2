package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hawser.dev/hawser/reconciler"
)

// statusTimeout bounds the Docker call behind a status request.
const statusTimeout = 10 * time.Second

// adminHandler serves the admin listener: health, metrics and the API the
// CLI talks to.
func adminHandler(rec *reconciler.Reconciler, reg *prometheus.Registry, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
		defer cancel()
		st, err := rec.Status(ctx)
		if err != nil {
			log.Warn("status: container list failed", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, apiError{Message: "cannot read the containers from Docker: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST /api/v1/sync", func(w http.ResponseWriter, r *http.Request) {
		var req syncRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeJSON(w, http.StatusBadRequest, apiError{Message: "sync: the body must be JSON like {\"recreate\": [\"web\"]}"})
			return
		}
		t := reconciler.TriggerSync
		t.Recreate = req.Recreate
		rec.Request(t)
		writeJSON(w, http.StatusAccepted, map[string]string{"message": "reconcile requested"})
	})
	return mux
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
