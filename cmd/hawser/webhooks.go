package main

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/config"
	"hawser.dev/hawser/reconciler/webhook"
)

// webhookWindow is how long the first webhook of a burst waits for the
// rest: a push of several branches, or a merge train, makes one reconcile.
const webhookWindow = 250 * time.Millisecond

// newWebhooks receives the git host's pushes: one to the watched branch or
// a preview branch, or the deletion of one, asks for a reconcile at once.
func newWebhooks(cfg *config.Config, rec *reconciler.Reconciler, reg prometheus.Registerer, log *slog.Logger) (*webhook.Receiver, error) {
	return webhook.New(webhook.Options{
		Secret: cfg.WebhookSecret.Reveal(),
		Wanted: rec.Watches,
		Trigger: func(e webhook.Event) {
			rec.RequestBatched(reconciler.TriggerWebhook, webhookWindow)
		},
		Log:        log.With("component", "webhook"),
		Registerer: reg,
	})
}
